"""Receipts: reads and acknowledgements (group-committed), delivery from clients'
``received`` confirmations, the per-unit roll-up, the CSV record, and the coalesced
``directive.receipts`` events to the sender.

Delivery: a client's ``received {topic: "user:N", seq}`` covers every event of its inbox
up to ``seq``; each recipient row stores the seq of its ``directive.issued`` event, so the
rows it covers are those with ``event_seq <= seq``. The gateway hands confirmations over in
batches; one batch costs one read (which rows are still undelivered) and, when some are,
one write transaction with a bulk ``UPDATE … WHERE id IN (…) AND delivered_at IS NULL``
per chunk — so 3,200 confirmations in a second are a handful of statements, and two nodes
confirming the same row set it once.

Progress to the sender is coalesced: each node gathers the directives whose receipts
changed and, at most once per ``receipt_progress_secs``, emits one ``directive.receipts``
event per changed directive (through the write path, so it is logged and resumable). The
interval is a rate limit on real time, not a domain deadline, so it uses the event loop's
clock rather than the injected one.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from messaging.directives import (
    access_of,
    is_sender_side,
    load_directive,
    receipt_json,
    unit_names,
    utf8_len,
)
from messaging.events import emit_directive_receipts
from messaging.models import Directive, DirectiveRecipient
from messaging.runtime import messaging_runtime
from server.audit import AuditEntry
from server.auth.principal import Principal
from server.context import Context, Write
from server.errors import Forbidden, NotFound, PayloadTooLarge
from server.features import Received
from server.group_commit import Applied, GroupCommit, is_stored_id, require_encodable

log = logging.getLogger("dienhong.messaging.receipts")

# Rows per IN (...) list: well under SQLite's and asyncpg's parameter limits.
CHUNK = 500
# Directives remembered as changed between two coalesced flushes (bounded).
MAX_DIRTY = 10_000


def _chunks(values: Sequence[int], size: int = CHUNK) -> Iterable[Sequence[int]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


async def record_deliveries(ctx: Context, batch: Sequence[Received]) -> None:
    """``received_handlers`` entry: mark the directives a batch of confirmations covers."""
    confirmed: dict[int, int] = {}
    for item in batch:
        if item.topic == f"user:{item.user_id}":
            confirmed[item.user_id] = max(item.seq, confirmed.get(item.user_id, 0))
    if not confirmed:
        return
    # Delivered when the confirmations reached this node, not when our write got its turn.
    confirmed_at = ctx.clock.now()
    covered: list[int] = []
    async with ctx.read() as session:
        for users in _chunks(sorted(confirmed)):
            rows = await session.execute(
                select(
                    DirectiveRecipient.id, DirectiveRecipient.user_id, DirectiveRecipient.event_seq
                ).where(
                    DirectiveRecipient.user_id.in_(users), DirectiveRecipient.delivered_at.is_(None)
                )
            )
            covered.extend(
                row_id for row_id, user_id, seq in rows.all() if seq <= confirmed[user_id]
            )
    if not covered:
        return
    changed: set[int] = set()
    async with ctx.write() as w:
        for ids in _chunks(covered):
            result = await w.session.execute(
                update(DirectiveRecipient)
                .where(DirectiveRecipient.id.in_(ids), DirectiveRecipient.delivered_at.is_(None))
                .values(delivered_at=confirmed_at)
                .returning(DirectiveRecipient.directive_id)
            )
            changed.update(result.scalars().all())
    runtime = messaging_runtime(ctx)
    if runtime is not None and changed:
        runtime.notifier.mark(changed)


async def summary(session: AsyncSession, directive: Directive, now: datetime) -> dict[str, int]:
    row = (
        await session.execute(
            select(
                func.count(),
                func.count(DirectiveRecipient.delivered_at),
                func.count(DirectiveRecipient.read_at),
                func.count(DirectiveRecipient.acknowledged_at),
            ).where(DirectiveRecipient.directive_id == directive.id)
        )
    ).one()
    total, delivered, read, acked = (int(v) for v in row)
    overdue = total - acked if directive.due_at is not None and now > directive.due_at else 0
    return {
        "recipients": total,
        "delivered": delivered,
        "read": read,
        "acknowledged": acked,
        "overdue": overdue,
    }


async def receipts_report(ctx: Context, actor: Principal, directive_id: int) -> dict[str, Any]:
    """Summary, per-unit roll-up and per-user receipts, for the sender side only."""
    async with ctx.read() as session:
        directive = await load_directive(session, directive_id)
        if not is_sender_side(actor, directive):
            raise Forbidden("Only the sender side sees the receipts.", code="not_sender")
        now = ctx.clock.now()
        result: dict[str, Any] = {
            "directive_id": directive.id,
            "summary": await summary(session, directive, now),
        }
        rows = await session.execute(
            select(
                DirectiveRecipient.unit_id,
                func.count(),
                func.count(DirectiveRecipient.delivered_at),
                func.count(DirectiveRecipient.read_at),
                func.count(DirectiveRecipient.acknowledged_at),
            )
            .where(DirectiveRecipient.directive_id == directive.id)
            .group_by(DirectiveRecipient.unit_id)
            .order_by(DirectiveRecipient.unit_id)
        )
        groups = rows.all()
        names = await unit_names(session, [g[0] for g in groups])
        result["units"] = [
            {
                "unit_id": unit_id,
                "name": names.get(unit_id, ""),
                "recipients": total,
                "delivered": delivered,
                "read": read,
                "acknowledged": acked,
            }
            for unit_id, total, delivered, read, acked in groups
        ]
        users = (
            (
                await session.execute(
                    select(DirectiveRecipient)
                    .where(DirectiveRecipient.directive_id == directive.id)
                    .order_by(DirectiveRecipient.unit_id, DirectiveRecipient.user_id)
                )
            )
            .scalars()
            .all()
        )
        result["users"] = [
            {
                "user_id": r.user_id,
                "unit_id": r.unit_id,
                "state": r.state.value,
                "delivered_at": r.delivered_at,
                "read_at": r.read_at,
                "acknowledged_at": r.acknowledged_at,
                "note": r.ack_note,
                "reminders_sent": r.reminders_sent,
            }
            for r in users
        ]
        result["left_out"] = directive.left_out
        return result


class ReceiptsNotifier:
    """Coalesces receipt changes into a few ``directive.receipts`` events per second."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._dirty: set[int] = set()
        self._wake = asyncio.Event()

    def mark(self, directive_ids: Iterable[int]) -> None:
        for directive_id in directive_ids:
            if len(self._dirty) < MAX_DIRTY:
                self._dirty.add(directive_id)
        self._wake.set()

    async def run(self) -> None:
        interval = max(0.01, self.ctx.settings.receipt_progress_secs)
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                log.exception("sending receipt progress failed")
            # At most one event per directive per interval, whatever the changes.
            await asyncio.sleep(interval)

    async def flush(self) -> None:
        if not self._dirty:
            return
        changed, self._dirty = sorted(self._dirty), set()
        async with self.ctx.write() as w:
            for directive_id in changed:
                directive = await w.session.get(Directive, directive_id)
                if directive is None:
                    continue
                counts = await summary(w.session, directive, w.now)
                await emit_directive_receipts(
                    w, directive.sender_id, directive_id=directive.id, summary=counts
                )


async def run_receipts_notifier(ctx: Context) -> None:
    """``Feature.background`` entry: the node's coalescing loop."""
    runtime = messaging_runtime(ctx)
    assert runtime is not None, "the messaging feature's start-up installs its runtime"
    await runtime.notifier.run()


# --- reads and acknowledgements ---------------------------------------------------------
#
# Written in batches by the node's ``ReceiptWriter`` (``server.group_commit``): 3,200
# clerks acknowledging within seconds cost a handful of transactions, each request still
# judged and answered on its own.


class ReceiptKind(enum.StrEnum):
    READ = "read"
    ACK = "ack"


@dataclass(frozen=True)
class ReceiptRequest:
    actor: Principal
    directive_id: int
    kind: ReceiptKind
    note: str | None = None


@dataclass
class _Loaded:
    """The batch's directives and its actors' recipient rows, read once (held here, so
    the session's identity map keeps them for every item)."""

    directives: dict[int, Directive]
    recipients: dict[tuple[int, int], DirectiveRecipient]


class ReceiptWriter(GroupCommit[ReceiptRequest, _Loaded, dict[str, Any]]):
    """Reads and acknowledgements of directives, group-committed."""

    what = "receipts"

    def isolate(self, item: ReceiptRequest) -> bool:
        # ``apply`` changes only the rows ``prepare`` loaded and refuses before changing
        # any: no savepoint per item, so 3,200 acknowledgements are not 9,600 statements.
        return False

    def __init__(self, ctx: Context) -> None:
        super().__init__(
            ctx, batch_size=ctx.settings.receipt_batch, queue_limit=ctx.settings.receipt_queue_limit
        )

    def judge(self, item: ReceiptRequest) -> None:
        if not is_stored_id(item.directive_id):
            raise NotFound(
                f"Directive {item.directive_id} does not exist.", code="directive_not_found"
            )
        if item.note is not None:
            require_encodable(item.note, "note")
            limit = self.ctx.settings.max_message_bytes
            if utf8_len(item.note) > limit:
                raise PayloadTooLarge(f"The note is over {limit} bytes.", code="note_too_large")

    async def prepare(self, w: Write, items: Sequence[ReceiptRequest]) -> _Loaded:
        # Two reads for the whole batch instead of two per request.
        loaded = _Loaded({}, {})
        by_directive: dict[int, set[int]] = {}
        for item in items:
            by_directive.setdefault(item.directive_id, set()).add(item.actor.id)
        for chunk in _chunks(sorted(by_directive)):
            for directive in (
                await w.session.execute(select(Directive).where(Directive.id.in_(chunk)))
            ).scalars():
                loaded.directives[directive.id] = directive
        for directive_id in sorted(loaded.directives):
            for users in _chunks(sorted(by_directive[directive_id])):
                for row in (
                    await w.session.execute(
                        select(DirectiveRecipient).where(
                            DirectiveRecipient.directive_id == directive_id,
                            DirectiveRecipient.user_id.in_(users),
                        )
                    )
                ).scalars():
                    loaded.recipients[(directive_id, row.user_id)] = row
        return loaded

    async def apply(
        self, w: Write, item: ReceiptRequest, prepared: _Loaded
    ) -> Applied[dict[str, Any]]:
        directive = prepared.directives.get(item.directive_id)
        if directive is None:
            raise NotFound(
                f"Directive {item.directive_id} does not exist.", code="directive_not_found"
            )
        row = prepared.recipients.get((directive.id, item.actor.id))
        access = access_of(item.actor, directive, row)
        if row is None or access.recipient is None:
            raise Forbidden("You are not a recipient of this directive.", code="not_a_recipient")
        if item.kind is ReceiptKind.READ:
            if row.read_at is not None:
                return Applied(receipt_json(row))
            row.read_at = w.now
            row.delivered_at = row.delivered_at or w.now
            details: dict[str, Any] = {}
        else:
            if row.acknowledged_at is not None:
                return Applied(receipt_json(row))
            row.acknowledged_at = w.now
            row.ack_note = item.note
            row.read_at = row.read_at or w.now
            row.delivered_at = row.delivered_at or w.now
            row.next_reminder_at = None
            details = {"note": item.note}
        answer = receipt_json(row)
        entry = AuditEntry(
            item.actor.id, f"directive.{item.kind.value}", f"directive:{directive.id}", details
        )
        return Applied(answer, audit=[entry], after_commit=[_changed(self.ctx, directive.id)])


def _changed(ctx: Context, directive_id: int) -> Any:
    def mark() -> None:
        runtime = messaging_runtime(ctx)
        if runtime is not None:
            runtime.notifier.mark([directive_id])

    return mark


def offer_receipt(ctx: Context, request: ReceiptRequest) -> asyncio.Future[dict[str, Any]]:
    """Judge and queue a read or acknowledgement; the future holds its answer (the receipt)
    once written. The HTTP routes await it; a socket answers when it resolves."""
    runtime = messaging_runtime(ctx)
    assert runtime is not None, "the messaging feature's start-up installs its runtime"
    return runtime.writer.offer(request)


def read_request(actor: Principal, directive_id: int) -> ReceiptRequest:
    """The actor read the directive."""
    return ReceiptRequest(actor, directive_id, ReceiptKind.READ)


def ack_request(
    actor: Principal, directive_id: int, *, note: str | None, user_id: int | None = None
) -> ReceiptRequest:
    """The actor acknowledges the directive; only for itself."""
    if user_id is not None and user_id != actor.id:
        raise Forbidden("You can only acknowledge for yourself.", code="not_your_receipt")
    return ReceiptRequest(actor, directive_id, ReceiptKind.ACK, note)


async def mark_read(ctx: Context, actor: Principal, directive_id: int) -> dict[str, Any]:
    """Record that the actor read the directive (once; repeating changes nothing)."""
    return await offer_receipt(ctx, read_request(actor, directive_id))


async def acknowledge(
    ctx: Context,
    actor: Principal,
    directive_id: int,
    *,
    note: str | None,
    user_id: int | None = None,
) -> dict[str, Any]:
    """Record the actor's acknowledgement (once; repeating changes nothing)."""
    return await offer_receipt(ctx, ack_request(actor, directive_id, note=note, user_id=user_id))


async def run_receipt_writer(ctx: Context) -> None:
    """``Feature.background`` entry: the node's receipt writer."""
    runtime = messaging_runtime(ctx)
    assert runtime is not None, "the messaging feature's start-up installs its runtime"
    await runtime.writer.run()
