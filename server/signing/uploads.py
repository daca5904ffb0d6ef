"""Checking the signatures of an uploaded PDF, and what the file's JSON says of them.

A PDF whose bytes hold no ``/ByteRange`` has no signature and costs nothing more. One
that does is validated in a PDF worker process (pyhanko parses a file from outside, so
it gets the same time and memory limits as every other PDF job), and the summaries are
stored with the file: ``signatures`` in its JSON.
"""

from __future__ import annotations

import asyncio
import logging
import mmap
from pathlib import Path
from typing import Any

from sqlalchemy import select

from server.context import Context, Write
from server.files.runtime import runtime
from server.files.worker import JobRejected, WorkerCrashed, WorkerTimeout
from server.signing.config import verify_policy
from server.signing.errors import SigningNotConfigured
from server.signing.models import FileSignatures

log = logging.getLogger("dienhong.signing")

SIGNATURE_MARKER = b"/ByteRange"


def _may_be_signed(path: Path) -> bool:
    with path.open("rb") as f:
        if path.stat().st_size == 0:
            return False
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return data.find(SIGNATURE_MARKER) != -1


def _not_checked(reason: str) -> list[dict[str, Any]]:
    return [
        {
            "field": "",
            "signer": "",
            "signer_common_name": "",
            "valid": False,
            "problems": ["not_checked"],
            "error": reason,
        }
    ]


async def check_upload(ctx: Context, path: Path) -> list[dict[str, Any]] | None:
    """The signatures of the PDF at ``path``; None when it carries none."""
    if not await asyncio.to_thread(_may_be_signed, path):
        return None
    try:
        policy = await asyncio.to_thread(verify_policy, ctx.settings)
    except SigningNotConfigured as exc:
        log.error("uploaded signatures cannot be checked: %s", exc.message)
        return _not_checked("the server's trust roots cannot be read")
    settings = ctx.settings
    timeout = settings.pdf_worker_timeout_secs + 3 * settings.signing_network_timeout_secs
    try:
        result: list[dict[str, Any]] = await runtime(ctx).parse_pool.run(
            "verify_signatures",
            {
                "path": str(path),
                "trust_roots_der": [c.dump() for c in policy.trust_roots],
                "fetch": policy.fetch,
                "network_timeout_secs": policy.network_timeout_secs,
                "max_signatures": policy.max_signatures,
            },
            timeout,
        )
    except (JobRejected, WorkerTimeout, WorkerCrashed) as exc:
        log.warning("the signatures of an upload could not be checked: %s", exc)
        return _not_checked(str(exc)[:300])
    return result or None


def record(w: Write, file_id: int, signatures: list[dict[str, Any]] | None) -> None:
    """Store the summaries with the file (in the upload's transaction)."""
    if signatures is not None:
        w.session.add(FileSignatures(file_id=file_id, signatures=signatures, checked_at=w.now))


async def signatures_of_file(ctx: Context, file_id: int) -> list[dict[str, Any]]:
    """What the file's signatures said at upload ([] for an unsigned file)."""
    async with ctx.read() as session:
        row = (
            await session.execute(select(FileSignatures).where(FileSignatures.file_id == file_id))
        ).scalar_one_or_none()
    return list(row.signatures) if row is not None else []
