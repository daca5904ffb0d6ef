"""Signing a stored document one step at a time, through the one write path.

The PDF is signed in a worker thread (token, CA and TSA round trips); the result is kept
in the content store by its SHA-256 and recorded in one transaction with the audit
record (``document.signed``, with the certificate's fingerprint) and the event. If
another step was recorded meanwhile, the new signature is dropped: 409, nothing stored.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server.context import Context
from server.errors import Conflict, NotFound
from server.events import emit_document_signed
from server.files.storage import ContentStore
from server.settings import Settings
from server.signing.config import signing_policy
from server.signing.keys import SigningKey
from server.signing.models import DocumentSignature, SignedDocument
from server.signing.pades import Signed, sign_pdf


@dataclass(frozen=True)
class Step:
    """One signature to add: which step, by whom, with which key."""

    name: str
    key: SigningKey
    secret: str
    signer_id: int | None
    reason: str
    next_step: str | None


def store(settings: Settings) -> ContentStore:
    return ContentStore(settings.data_dir)


def _keep(settings: Settings, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    content = store(settings)
    temp = content.temp_path(".signed")
    temp.write_bytes(data)
    content.keep(temp, sha)
    return sha


def read_content(settings: Settings, document: SignedDocument) -> bytes:
    """The document's current bytes (blocking); 404 ``content_missing`` if gone."""
    path = store(settings).blob_path(document.sha256)
    if not path.is_file():
        raise NotFound(
            "The signed document's content is missing on this server.", code="content_missing"
        )
    return path.read_bytes()


async def find_document(
    session: AsyncSession, kind: str, subject: str, *, lock: bool = False
) -> SignedDocument | None:
    query = select(SignedDocument).where(
        SignedDocument.kind == kind, SignedDocument.subject == subject
    )
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def signatures_of(session: AsyncSession, document_id: int) -> list[DocumentSignature]:
    return list(
        (
            await session.execute(
                select(DocumentSignature)
                .where(DocumentSignature.document_id == document_id)
                .order_by(DocumentSignature.id)
            )
        )
        .scalars()
        .all()
    )


def signature_json(row: DocumentSignature) -> dict[str, Any]:
    return {
        "step": row.step,
        "signer_id": row.signer_id,
        "signer_name": row.signer_name,
        "certificate_sha256": row.certificate_sha256,
        "signed_at": row.signed_at,
        "sha256": row.sha256,
    }


async def add_signature(
    ctx: Context,
    kind: str,
    subject: str,
    unsigned: bytes | None,
    step: Step,
    *,
    actor_id: int | None,
    topic: str | None = None,
) -> SignedDocument:
    """Sign the document ``(kind, subject)`` as ``step`` and record it.

    ``unsigned`` is the document to start from when none is stored yet (the first step);
    otherwise the stored bytes are signed and ``step.name`` must be the document's next
    step. Raises the signing errors (nothing stored) or 409 ``signature_conflict``.
    """
    async with ctx.read() as session:
        document = await find_document(session, kind, subject)
    if document is None:
        if unsigned is None:
            raise NotFound(f"No {kind} document for {subject}.", code="document_not_found")
        data, before = unsigned, None
    else:
        if document.next_step != step.name:
            raise Conflict(
                f"The {kind} of {subject} waits for the {document.next_step} "
                f"signature, not the {step.name}'s.",
                code="signature_conflict",
            )
        data = await asyncio.to_thread(read_content, ctx.settings, document)
        before = document.sha256
    settings = ctx.settings

    def sign() -> tuple[Signed, str]:
        signed = sign_pdf(
            data,
            step.key,
            step.secret,
            signing_policy(settings),
            field_name=f"{kind}-{step.name}",
            reason=step.reason,
        )
        return signed, _keep(settings, signed.pdf)

    signed, sha = await asyncio.to_thread(sign)
    try:
        async with ctx.write() as w:
            current = await find_document(w.session, kind, subject, lock=True)
            if (current.sha256 if current else None) != before:
                raise Conflict(
                    f"The {kind} of {subject} was signed by someone else meanwhile; try again.",
                    code="signature_conflict",
                )
            if current is None:
                current = SignedDocument(kind=kind, subject=subject, created_at=w.now)
                w.session.add(current)
            current.sha256 = sha
            current.size = len(signed.pdf)
            current.next_step = step.next_step
            current.updated_at = w.now
            await w.session.flush()
            signer_name = signed.subject_name
            w.session.add(
                DocumentSignature(
                    document_id=current.id,
                    step=step.name,
                    signer_id=step.signer_id,
                    signer_name=signer_name,
                    certificate_sha256=signed.fingerprint,
                    field_name=signed.field_name,
                    sha256=sha,
                    signed_at=w.now,
                )
            )
            details = {
                "kind": kind,
                "step": step.name,
                "signer": signer_name,
                "certificate_sha256": signed.fingerprint,
                "sha256": sha,
                "next_step": step.next_step,
            }
            await w.audit(actor_id, "document.signed", subject, details)
            if topic is not None:
                await emit_document_signed(w, topic, subject=subject, **details)
    except IntegrityError as exc:
        raise Conflict(
            f"The {kind} of {subject} was signed by someone else meanwhile; try again.",
            code="signature_conflict",
        ) from exc
    return current
