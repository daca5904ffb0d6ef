"""Reading the audit log: filtered pages, the chain's status and an export for a period
(for administrators and auditors; nothing here writes)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from server.audit import AuditRecord, verify_chain
from server.auth.principal import Principal
from server.context import Context
from server.errors import Forbidden
from server.org.models import Role, User
from server.spreadsheet import inert

EXPORT_BATCH = 1000
EXPORT_COLUMNS = ("seq", "at", "actor_id", "actor", "action", "subject", "details", "hash")


def require_auditor(actor: Principal) -> None:
    if not actor.has_role(Role.ADMIN, Role.AUDITOR):
        raise Forbidden("Only an administrator or an auditor may read the audit log.")


def _conditions(
    *,
    since: datetime | None,
    until: datetime | None,
    actor_id: int | None,
    action: str,
    subject: str,
) -> list[Any]:
    found: list[Any] = []
    if since is not None:
        found.append(AuditRecord.at >= since)
    if until is not None:
        found.append(AuditRecord.at < until)
    if actor_id is not None:
        found.append(AuditRecord.actor_id == actor_id)
    if action:
        # "user." finds every action on users; a full name finds that action alone.
        found.append(
            AuditRecord.action.startswith(action)
            if action.endswith(".")
            else AuditRecord.action == action
        )
    if subject:
        found.append(AuditRecord.subject == subject)
    return found


def _record_json(row: AuditRecord, names: dict[int, str]) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "at": row.at,
        "actor_id": row.actor_id,
        "actor": names.get(row.actor_id) if row.actor_id is not None else None,
        "action": row.action,
        "subject": row.subject,
        "details": row.details,
        "hash": row.hash,
    }


async def _usernames(session: Any, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = await session.execute(select(User.id, User.username).where(User.id.in_(ids)))
    return {int(uid): str(name) for uid, name in rows}


async def audit_page(
    ctx: Context,
    actor: Principal,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    actor_id: int | None = None,
    action: str = "",
    subject: str = "",
    page: int = 1,
    per_page: int = 50,
) -> dict[str, Any]:
    """One page of audit records, newest first, matching the filters, with the total."""
    require_auditor(actor)
    where = _conditions(since=since, until=until, actor_id=actor_id, action=action, subject=subject)
    async with ctx.read() as session:
        total = (
            await session.execute(select(func.count()).select_from(AuditRecord).where(*where))
        ).scalar_one()
        rows = (
            (
                await session.execute(
                    select(AuditRecord)
                    .where(*where)
                    .order_by(AuditRecord.seq.desc())
                    .offset((page - 1) * per_page)
                    .limit(per_page)
                )
            )
            .scalars()
            .all()
        )
        names = await _usernames(session, {r.actor_id for r in rows if r.actor_id is not None})
        actions = (
            (
                await session.execute(
                    select(AuditRecord.action).distinct().order_by(AuditRecord.action)
                )
            )
            .scalars()
            .all()
        )
    return {
        "records": [_record_json(row, names) for row in rows],
        "total": int(total),
        "page": page,
        "per_page": per_page,
        "actions": list(actions),
    }


async def chain_status(ctx: Context, actor: Principal) -> dict[str, Any]:
    """What ``dienhong verify-audit`` answers: whether the chain holds, and where not."""
    require_auditor(actor)
    async with ctx.read() as session:
        report = await verify_chain(session)
    return {
        "ok": report.ok,
        "records": report.records,
        "head_hash": report.head_hash,
        "first_bad_seq": report.first_bad_seq,
        "problem": report.problem,
    }


async def export_records(
    ctx: Context,
    actor: Principal,
    *,
    fmt: str,
    since: datetime | None,
    until: datetime | None,
    actor_id: int | None = None,
    action: str = "",
    subject: str = "",
) -> AsyncIterator[str]:
    """The records of a period, oldest first, as CSV or JSON lines, read in batches."""
    require_auditor(actor)
    where = _conditions(since=since, until=until, actor_id=actor_id, action=action, subject=subject)
    if fmt == "csv":
        yield _csv_line(EXPORT_COLUMNS)
    after = 0
    while True:
        async with ctx.read() as session:
            rows = (
                (
                    await session.execute(
                        select(AuditRecord)
                        .where(*where, AuditRecord.seq > after)
                        .order_by(AuditRecord.seq)
                        .limit(EXPORT_BATCH)
                    )
                )
                .scalars()
                .all()
            )
            names = await _usernames(session, {r.actor_id for r in rows if r.actor_id is not None})
        if not rows:
            return
        for row in rows:
            record = _record_json(row, names)
            record["at"] = row.at.isoformat()
            if fmt == "csv":
                yield _csv_line(
                    [
                        record[c]
                        if c != "details"
                        else json.dumps(record[c], ensure_ascii=False, sort_keys=True)
                        for c in EXPORT_COLUMNS
                    ]
                )
            else:
                yield json.dumps(record, ensure_ascii=False, default=str) + "\n"
        after = rows[-1].seq


def _csv_line(values: Any) -> str:
    out = io.StringIO()
    # A text cell that a spreadsheet would run as a formula is written as text.
    cells = [inert(v) if isinstance(v, str) else ("" if v is None else v) for v in values]
    csv.writer(out).writerow(cells)
    return out.getvalue()
