"""The audit chain anchored outside the database: signed checkpoints in a file.

The hash chain in ``server.audit`` shows any change to a record that was not followed by
recomputing every later hash. Someone who can write to the database can do exactly that:
rewrite a record and recompute the chain and its head, or cut the tail together with the
head row. So each node periodically writes a checkpoint (head position, head hash, time)
signed with its key to an append-only JSON-lines file outside the database. ``verify-audit``
then checks that every checkpoint's record is still there with the same hash; the minutes
carry the last checkpoint, so a printed record anchors the chain too.

Signers are pluggable (``CheckpointSigner``): the node's Ed25519 key by default, and
``verify_anchored`` accepts a checkpoint signed by any key it is given a verifier for. When
the organisation's seal is configured, each checkpoint is also signed by it (a
``Countersigner``: a detached CMS signature of the same canonical bytes, see
``server.signing.checkpoints``), so that rewriting the file needs the organisation's key
and not only the node's, which lives on the server's disk.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit import AuditRecord, ChainReport, head_hash, verify_chain
from server.clock import utc_iso
from server.private_paths import PRIVATE_FILE_MODE
from server.settings import Settings

if TYPE_CHECKING:
    from server.context import Context

log = logging.getLogger("dienhong.audit")

CHECKPOINT_FILE = "audit-checkpoints.jsonl"
# A verifier answers whether ``signature`` is the key's signature of ``payload``.
Verifier = Callable[[bytes, bytes], bool]


class CheckpointSigner(Protocol):
    """Signs checkpoints; ``key_id`` names the key so a verifier can be chosen."""

    key_id: str
    algorithm: str

    def sign(self, payload: bytes) -> bytes: ...

    def verifier(self) -> Verifier: ...


class Countersigner(Protocol):
    """A second signature of a checkpoint's payload (DER bytes; blocking)."""

    def countersign(self, payload: bytes) -> bytes: ...


# Answers why a checkpoint's countersignature fails, or None when it holds (blocking).
CountersignatureCheck = Callable[["Checkpoint"], "str | None"]


def ed25519_key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:32]


class NodeKeySigner:
    """The node's own Ed25519 key (the one under ``data_dir/keys`` that signs tokens)."""

    algorithm = "Ed25519"

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.key_id = ed25519_key_id(key.public_key())

    @classmethod
    def for_node(cls, settings: Settings) -> NodeKeySigner:
        from server.auth.tokens import load_or_create_signing_key

        return cls(load_or_create_signing_key(settings))

    def sign(self, payload: bytes) -> bytes:
        return self._key.sign(payload)

    def verifier(self) -> Verifier:
        return ed25519_verifier(self._key.public_key())


def ed25519_verifier(public: Ed25519PublicKey) -> Verifier:
    def verify(payload: bytes, signature: bytes) -> bool:
        try:
            public.verify(signature, payload)
        except InvalidSignature:
            return False
        return True

    return verify


def node_verifiers(settings: Settings) -> dict[str, Verifier]:
    """Verifiers by key id of the node key and of the keys it replaced (``dienhong
    rotate-key`` keeps their public halves): every checkpoint a node of this data
    directory ever signed."""
    from server.auth.tokens import retired_public_keys

    signer = NodeKeySigner.for_node(settings)
    verifiers = {ed25519_key_id(p): ed25519_verifier(p) for p in retired_public_keys(settings)}
    verifiers[signer.key_id] = signer.verifier()
    return verifiers


@dataclass(frozen=True)
class Checkpoint:
    """The audit chain's head at a moment, signed: ``seq`` records ending in ``hash``."""

    seq: int
    hash: str
    at: str
    key_id: str
    algorithm: str
    signature: str = ""
    # The organisation's detached CMS signature of ``payload()``, base64 DER ("" if none).
    org_signature: str = ""

    def payload(self) -> bytes:
        """The signed bytes: everything but the signature, canonical JSON."""
        fields = {
            "seq": self.seq,
            "hash": self.hash,
            "at": self.at,
            "key_id": self.key_id,
            "algorithm": self.algorithm,
        }
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def checkpoint_path(settings: Settings) -> Path:
    """Where the checkpoints are kept: ``DIENHONG_AUDIT_CHECKPOINT_PATH`` or the data dir."""
    if settings.audit_checkpoint_path:
        return Path(settings.audit_checkpoint_path)
    return Path(settings.data_dir) / CHECKPOINT_FILE


class CheckpointFileError(ValueError):
    """A line of the checkpoint file is not a checkpoint."""


def read_checkpoints(path: Path) -> list[Checkpoint]:
    """Every checkpoint in the file, oldest first ([] when there is no file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            found.append(
                Checkpoint(
                    seq=int(raw["seq"]),
                    hash=str(raw["hash"]),
                    at=str(raw["at"]),
                    key_id=str(raw["key_id"]),
                    algorithm=str(raw["algorithm"]),
                    signature=str(raw["signature"]),
                    org_signature=str(raw.get("org_signature", "")),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointFileError(f"{path} line {number} is not a checkpoint") from exc
    return found


def last_checkpoint(settings: Settings) -> Checkpoint | None:
    """The newest checkpoint of this node, for the minutes (None before the first)."""
    found = read_checkpoints(checkpoint_path(settings))
    return found[-1] if found else None


def _append_line(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


async def write_checkpoint(
    session: AsyncSession,
    settings: Settings,
    signer: CheckpointSigner,
    at_iso: str,
    countersigner: Countersigner | None = None,
) -> Checkpoint | None:
    """Append a signed checkpoint of the current head, unless the last one already is it.

    With a ``countersigner`` the checkpoint is written only with both signatures: when the
    organisation's key cannot sign (token absent), nothing is written and this raises.
    """
    seq, digest = await head_hash(session)
    if seq == 0:
        return None
    path = checkpoint_path(settings)
    previous = await asyncio.to_thread(last_checkpoint, settings)
    if previous is not None and previous.seq == seq and previous.hash == digest:
        return None
    unsigned = Checkpoint(
        seq=seq, hash=digest, at=at_iso, key_id=signer.key_id, algorithm=signer.algorithm
    )
    signature = base64.b64encode(signer.sign(unsigned.payload())).decode()
    org_signature = ""
    if countersigner is not None:
        org_der = await asyncio.to_thread(countersigner.countersign, unsigned.payload())
        org_signature = base64.b64encode(org_der).decode()
    checkpoint = Checkpoint(
        **{**asdict(unsigned), "signature": signature, "org_signature": org_signature}
    )
    await asyncio.to_thread(_append_line, path, checkpoint_line(checkpoint))
    return checkpoint


def checkpoint_line(checkpoint: Checkpoint) -> str:
    """A checkpoint as a line of the file."""
    fields = asdict(checkpoint)
    if not checkpoint.org_signature:
        del fields["org_signature"]
    return json.dumps(fields, sort_keys=True, separators=(",", ":")) + "\n"


def checkpoints_up_to(settings: Settings, seq: int) -> str:
    """The checkpoint file's lines of records up to ``seq``: the checkpoints that hold for
    a copy of the chain that ends there (a backup's)."""
    found = read_checkpoints(checkpoint_path(settings))
    return "".join(checkpoint_line(c) for c in found if c.seq <= seq)


async def verify_anchored(
    session: AsyncSession,
    checkpoints: Sequence[Checkpoint],
    verifiers: Mapping[str, Verifier],
    countersigned: CountersignatureCheck | None = None,
) -> ChainReport:
    """The chain recomputed, then held against every checkpoint.

    Fails when a checkpoint's signature is not that of a known key, when ``countersigned``
    finds fault with its organisation's signature, when a checkpointed
    record is gone (the tail was cut, head row and all), or when its hash differs (a
    record was rewritten and the chain recomputed after it).
    """
    report = await verify_chain(session)
    if not report.ok:
        return report
    for checkpoint in checkpoints:
        verify = verifiers.get(checkpoint.key_id)
        try:
            signature = base64.b64decode(checkpoint.signature, validate=True)
        except ValueError:
            signature = b""
        if verify is None or not verify(checkpoint.payload(), signature):
            return ChainReport(
                False,
                report.records,
                report.head_hash,
                checkpoint.seq,
                f"the checkpoint of record {checkpoint.seq} at {checkpoint.at} "
                "is not signed by a known key",
            )
        if countersigned is not None:
            problem = await asyncio.to_thread(countersigned, checkpoint)
            if problem is not None:
                return ChainReport(
                    False,
                    report.records,
                    report.head_hash,
                    checkpoint.seq,
                    f"the checkpoint of record {checkpoint.seq} at {checkpoint.at}: {problem}",
                )
        if checkpoint.seq > report.records:
            return ChainReport(
                False,
                report.records,
                report.head_hash,
                report.records + 1,
                f"the chain ends at record {report.records} but was checkpointed "
                f"at record {checkpoint.seq} on {checkpoint.at} "
                "(records removed from the end)",
            )
        stored = (
            await session.execute(select(AuditRecord.hash).where(AuditRecord.seq == checkpoint.seq))
        ).scalar_one()
        if stored != checkpoint.hash:
            return ChainReport(
                False,
                report.records,
                report.head_hash,
                checkpoint.seq,
                f"record {checkpoint.seq} differs from its checkpoint of "
                f"{checkpoint.at} (the chain was rewritten up to it)",
            )
    return report


async def checkpoint_now(
    ctx: Context, signer: CheckpointSigner, countersigner: Countersigner | None = None
) -> Checkpoint | None:
    """One checkpoint of the current head; a failure is logged, never raised."""
    try:
        async with ctx.read() as session:
            return await write_checkpoint(
                session, ctx.settings, signer, utc_iso(ctx.clock.now()), countersigner
            )
    except Exception:
        log.exception("could not write an audit checkpoint")
        return None


async def checkpoint_forever(
    ctx: Context, signer: CheckpointSigner, countersigner: Countersigner | None = None
) -> None:
    """Write a checkpoint every ``audit_checkpoint_interval_secs`` (a background job)."""
    while True:
        await checkpoint_now(ctx, signer, countersigner)
        await asyncio.sleep(ctx.settings.audit_checkpoint_interval_secs)
