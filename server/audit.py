"""Append-only, hash-chained audit log.

Each record stores the hash of the record before it; the record's own hash covers its
position, time, actor, action, subject, details and that previous hash. Editing, removing
or reordering any record breaks the chain from that record on, and ``verify_chain`` names
the first record where it breaks. The head (last position and hash) is kept in its own
row, which every writer locks, so records get gapless positions and truncating the tail
is detected too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from server.clock import utc_iso
from server.db import Base, UTCDateTime

GENESIS_HASH = "0" * 64
# Lengths of the action and subject columns.
ACTION_MAX = 64
SUBJECT_MAX = 120


class AuditRecord(Base):
    __tablename__ = "audit_log"

    # Position in the chain, gapless from 1.
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor_id: Mapped[int | None] = mapped_column(Integer, default=None)
    action: Mapped[str] = mapped_column(String(ACTION_MAX), index=True)
    subject: Mapped[str] = mapped_column(String(SUBJECT_MAX), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    hash: Mapped[str] = mapped_column(String(64), default=GENESIS_HASH)


def record_hash(
    seq: int,
    at: datetime,
    actor_id: int | None,
    action: str,
    subject: str,
    details: dict[str, Any],
    prev_hash: str,
) -> str:
    canonical = json.dumps(
        [seq, utc_iso(at), actor_id, action, subject, details, prev_hash],
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


async def append_audit(
    session: AsyncSession,
    *,
    at: datetime,
    actor_id: int | None,
    action: str,
    subject: str = "",
    details: dict[str, Any] | None = None,
) -> AuditRecord:
    """Append one record inside the caller's transaction (locks the chain head)."""
    # Hash exactly what the JSON column will give back when the chain is verified.
    details = json.loads(json.dumps(details or {}, ensure_ascii=False))
    # The columns are bounded; cut before hashing so the stored record verifies.
    action = action[:ACTION_MAX]
    subject = subject[:SUBJECT_MAX]
    head = await _locked_head(session)
    seq = head.seq + 1
    digest = record_hash(seq, at, actor_id, action, subject, details, head.hash)
    record = AuditRecord(
        seq=seq,
        at=at,
        actor_id=actor_id,
        action=action,
        subject=subject,
        details=details,
        prev_hash=head.hash,
        hash=digest,
    )
    session.add(record)
    head.seq = seq
    head.hash = digest
    await session.flush()
    return record


@dataclass(frozen=True)
class AuditEntry:
    """One record to append, before it has a position in the chain."""

    actor_id: int | None
    action: str
    subject: str = ""
    details: dict[str, Any] = field(default_factory=dict)


async def append_audit_many(
    session: AsyncSession, *, at: datetime, entries: Sequence[AuditEntry]
) -> None:
    """Append many records inside the caller's transaction: one lock of the chain head and
    one insert, with the same limits and hashing as ``append_audit`` (used by batched
    writes: a hundred ballots are a hundred records, not a hundred head updates)."""
    if not entries:
        return
    head = await _locked_head(session)
    seq, prev = head.seq, head.hash
    rows = []
    for entry in entries:
        seq += 1
        details = json.loads(json.dumps(entry.details or {}, ensure_ascii=False))
        action = entry.action[:ACTION_MAX]
        subject = entry.subject[:SUBJECT_MAX]
        digest = record_hash(seq, at, entry.actor_id, action, subject, details, prev)
        rows.append(
            {
                "seq": seq,
                "at": at,
                "actor_id": entry.actor_id,
                "action": action,
                "subject": subject,
                "details": details,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    await session.execute(insert(AuditRecord), rows)
    head.seq = seq
    head.hash = prev
    await session.flush()


async def _locked_head(session: AsyncSession) -> AuditHead:
    """The chain's head row, locked until commit; created on the very first record.

    Two first writers on PostgreSQL would both find no head: the insert ignores the
    conflict and both then lock the one row, so the second waits for the first.
    """
    query = select(AuditHead).where(AuditHead.id == 1).with_for_update()
    head = (await session.execute(query)).scalar_one_or_none()
    if head is not None:
        return head
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await session.execute(
        insert(AuditHead).values(id=1, seq=0, hash=GENESIS_HASH).on_conflict_do_nothing()
    )
    return (await session.execute(query.execution_options(populate_existing=True))).scalar_one()


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    records: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str = ""


async def verify_chain(session: AsyncSession, *, batch: int = 2000) -> ChainReport:
    """Recompute the whole chain; report the first record that was changed, removed or moved."""
    expected_seq = 1
    prev = GENESIS_HASH
    last_seq = 0
    while True:
        rows = (
            (
                await session.execute(
                    select(AuditRecord)
                    .where(AuditRecord.seq >= expected_seq)
                    .order_by(AuditRecord.seq)
                    .limit(batch)
                )
            )
            .scalars()
            .all()
        )
        if not rows:
            break
        for row in rows:
            if row.seq != expected_seq:
                return ChainReport(
                    False,
                    last_seq,
                    prev,
                    expected_seq,
                    f"record {expected_seq} is missing (removed)",
                )
            if row.prev_hash != prev:
                return ChainReport(
                    False,
                    last_seq,
                    prev,
                    row.seq,
                    f"record {row.seq} does not follow record {row.seq - 1} (removed or reordered)",
                )
            digest = record_hash(
                row.seq, row.at, row.actor_id, row.action, row.subject, row.details, row.prev_hash
            )
            if digest != row.hash:
                return ChainReport(
                    False,
                    last_seq,
                    prev,
                    row.seq,
                    f"record {row.seq} was changed after it was written",
                )
            prev = row.hash
            last_seq = row.seq
            expected_seq += 1
    head = (await session.execute(select(AuditHead).where(AuditHead.id == 1))).scalar_one_or_none()
    if head is None and last_seq > 0:
        return ChainReport(
            False,
            last_seq,
            prev,
            last_seq + 1,
            "the chain's head row is missing (removed with records at the end?)",
        )
    if head is not None and (head.seq != last_seq or head.hash != prev):
        return ChainReport(
            False,
            last_seq,
            prev,
            last_seq + 1,
            f"the chain ends at record {last_seq} but its head says {head.seq} "
            "(records removed from the end)",
        )
    return ChainReport(True, last_seq, prev)


async def head_hash(session: AsyncSession) -> tuple[int, str]:
    """Position and hash of the newest record, for printing on the record of a session."""
    head = (await session.execute(select(AuditHead).where(AuditHead.id == 1))).scalar_one_or_none()
    if head is None:
        return 0, GENESIS_HASH
    return head.seq, head.hash
