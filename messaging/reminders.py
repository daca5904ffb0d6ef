"""Chasing: reminders to recipients who have not acknowledged, overdue notices to the
sender and to each late recipient, escalation to the head of a late unit.

All state is in the database — ``next_reminder_at`` and ``reminders_sent`` per recipient,
``overdue_notified_at`` per directive — so the schedule survives restarts. Every node runs
the scheduler; due work is claimed inside a write transaction (PostgreSQL: ``SELECT … FOR
UPDATE SKIP LOCKED``; SQLite has one writer at a time) and moved forward in the same
transaction that emits the events, so each reminder is sent exactly once.

The scheduler sleeps on the injected clock until the earliest due time, or until
``reminder_poll_secs`` have passed (to pick up directives issued on other nodes), or until
a directive issued on this node wakes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from messaging.directives import iso, reminder_interval, unit_names
from messaging.events import (
    emit_directive_escalated,
    emit_directive_overdue,
    emit_directive_reminder,
)
from messaging.models import Directive, DirectiveRecipient
from messaging.runtime import started_runtime
from server.context import Context
from server.org.models import Confidentiality, User

log = logging.getLogger("dienhong.messaging.reminders")

# Back-off after a failed pass, so a broken database does not spin the loop.
FAILURE_BACKOFF_SECS = 1.0


class ReminderScheduler:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._wake = asyncio.Event()
        self._checked = asyncio.Condition()
        # The clock time of the last completed pass (tests wait on it).
        self.checked_until: datetime | None = None

    def wake(self) -> None:
        self._wake.set()

    async def wait_checked(self, moment: datetime) -> None:
        """Return once a pass that started at or after ``moment`` has completed."""
        async with self._checked:
            await self._checked.wait_for(
                lambda: self.checked_until is not None and self.checked_until >= moment
            )

    async def run(self) -> None:
        poll = timedelta(seconds=self.ctx.settings.reminder_poll_secs)
        while True:
            self._wake.clear()
            now = self.ctx.clock.now()
            next_at: datetime | None = None
            try:
                next_at = await self.run_due(now)
            except Exception:
                log.exception("a reminder pass failed")
                await asyncio.sleep(FAILURE_BACKOFF_SECS)
            async with self._checked:
                self.checked_until = now
                self._checked.notify_all()
            deadline = now + poll
            if next_at is not None and next_at < deadline:
                deadline = next_at
            await self._sleep_until(deadline)

    async def _sleep_until(self, deadline: datetime) -> None:
        if self._wake.is_set():
            return
        sleeper = asyncio.ensure_future(self.ctx.clock.sleep_until(deadline))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()

    async def run_due(self, now: datetime) -> datetime | None:
        """Send everything due at ``now``; returns when the next thing falls due."""
        batch = self.ctx.settings.reminder_batch
        while await self._send_reminders(now, batch) >= batch:
            pass
        while await self._send_overdue(now, batch) >= batch:
            pass
        async with self.ctx.read() as session:
            next_reminder = (
                await session.execute(
                    select(func.min(DirectiveRecipient.next_reminder_at)).where(
                        DirectiveRecipient.next_reminder_at.is_not(None)
                    )
                )
            ).scalar_one_or_none()
            next_overdue = (
                await session.execute(
                    select(func.min(Directive.due_at)).where(
                        Directive.overdue_notified_at.is_(None),
                        Directive.due_at.is_not(None),
                        Directive.ack_required.is_(True),
                    )
                )
            ).scalar_one_or_none()
        candidates = [t for t in (next_reminder, next_overdue) if t is not None]
        return min(candidates) if candidates else None

    async def _send_reminders(self, now: datetime, batch: int) -> int:
        threshold = self.ctx.settings.escalate_after_reminders
        async with self.ctx.write() as w:
            session = w.session
            due = (
                (
                    await session.execute(
                        select(DirectiveRecipient)
                        .where(
                            DirectiveRecipient.next_reminder_at <= now,
                            DirectiveRecipient.acknowledged_at.is_(None),
                        )
                        .order_by(DirectiveRecipient.next_reminder_at, DirectiveRecipient.id)
                        .limit(batch)
                        .with_for_update(skip_locked=True)
                    )
                )
                .scalars()
                .all()
            )
            if not due:
                return 0
            directive_ids = sorted({row.directive_id for row in due})
            directives = {
                d.id: d
                for d in (
                    await session.execute(select(Directive).where(Directive.id.in_(directive_ids)))
                )
                .scalars()
                .all()
            }
            to_escalate: dict[tuple[int, int], list[DirectiveRecipient]] = defaultdict(list)
            for row in due:
                directive = directives[row.directive_id]
                row.reminders_sent += 1
                row.next_reminder_at = now + reminder_interval(self.ctx, directive.urgency)
                await emit_directive_reminder(
                    w,
                    row.user_id,
                    directive_id=directive.id,
                    title=directive.title,
                    confidentiality=directive.confidentiality,
                    urgency=directive.urgency,
                    reminder=row.reminders_sent,
                    due_at=iso(directive.due_at),
                )
                if threshold > 0 and row.reminders_sent >= threshold and row.escalated_at is None:
                    to_escalate[(directive.id, row.unit_id)].append(row)
            for (directive_id, unit_id), rows in to_escalate.items():
                await self._escalate(w, directives[directive_id], unit_id, rows)
            return len(due)

    async def _escalate(
        self, w: Any, directive: Directive, unit_id: int, rows: list[DirectiveRecipient]
    ) -> None:
        """Tell the head(s) of a late unit, once per unit and directive."""
        session = w.session
        await session.execute(
            update(DirectiveRecipient)
            .where(
                DirectiveRecipient.directive_id == directive.id,
                DirectiveRecipient.unit_id == unit_id,
                DirectiveRecipient.escalated_at.is_(None),
            )
            .values(escalated_at=w.now)
        )
        for row in rows:
            row.escalated_at = w.now
        heads = (
            (
                await session.execute(
                    select(User).where(
                        User.unit_id == unit_id, User.is_unit_head.is_(True), User.active.is_(True)
                    )
                )
            )
            .scalars()
            .all()
        )
        level = Confidentiality(directive.confidentiality)
        late = (
            (
                await session.execute(
                    select(DirectiveRecipient.user_id).where(
                        DirectiveRecipient.directive_id == directive.id,
                        DirectiveRecipient.unit_id == unit_id,
                        DirectiveRecipient.acknowledged_at.is_(None),
                    )
                )
            )
            .scalars()
            .all()
        )
        told = []
        for head in heads:
            data: dict[str, Any] = {
                "directive_id": directive.id,
                "unit_id": unit_id,
                "confidentiality": directive.confidentiality,
                "late_user_ids": sorted(late),
                "reminders": max(r.reminders_sent for r in rows),
            }
            if Confidentiality(head.clearance).permits(level):
                data["title"] = directive.title
            await emit_directive_escalated(w, head.id, **data)
            told.append(head.id)
        await w.audit(
            None,
            "directive.escalate",
            f"directive:{directive.id}",
            {"unit_id": unit_id, "heads": told, "late_user_ids": sorted(late)},
        )

    async def _send_overdue(self, now: datetime, batch: int) -> int:
        async with self.ctx.write() as w:
            session = w.session
            due = (
                (
                    await session.execute(
                        select(Directive)
                        .where(
                            Directive.due_at <= now,
                            Directive.overdue_notified_at.is_(None),
                            Directive.ack_required.is_(True),
                        )
                        .order_by(Directive.due_at, Directive.id)
                        .limit(batch)
                        .with_for_update(skip_locked=True)
                    )
                )
                .scalars()
                .all()
            )
            for directive in due:
                directive.overdue_notified_at = w.now
                rows = (
                    await session.execute(
                        select(DirectiveRecipient.unit_id, func.count())
                        .where(
                            DirectiveRecipient.directive_id == directive.id,
                            DirectiveRecipient.acknowledged_at.is_(None),
                        )
                        .group_by(DirectiveRecipient.unit_id)
                        .order_by(DirectiveRecipient.unit_id)
                    )
                ).all()
                if not rows:
                    continue
                await self._tell_late_recipients(w, directive)
                names = await unit_names(session, [unit_id for unit_id, _ in rows])
                await emit_directive_overdue(
                    w,
                    [directive.sender_id],
                    directive_id=directive.id,
                    title=directive.title,
                    confidentiality=directive.confidentiality,
                    due_at=iso(directive.due_at),
                    late=sum(count for _, count in rows),
                    late_units=[
                        {"unit_id": unit_id, "name": names.get(unit_id, ""), "missing": count}
                        for unit_id, count in rows
                    ],
                )
            return len(due)

    async def _tell_late_recipients(self, w: Any, directive: Directive) -> None:
        """``directive.overdue`` to every recipient who has not acknowledged, so the clerk's
        card says "Quá hạn" at once; the title only to those still cleared for it."""
        level = Confidentiality(directive.confidentiality)
        late = (
            await w.session.execute(
                select(DirectiveRecipient.user_id, User.clearance)
                .join(User, User.id == DirectiveRecipient.user_id)
                .where(
                    DirectiveRecipient.directive_id == directive.id,
                    DirectiveRecipient.acknowledged_at.is_(None),
                )
                .order_by(DirectiveRecipient.user_id)
            )
        ).all()
        data: dict[str, Any] = {
            "directive_id": directive.id,
            "urgency": directive.urgency,
            "due_at": iso(directive.due_at),
            "confidentiality": directive.confidentiality,
        }
        cleared = [uid for uid, c in late if Confidentiality(c).permits(level)]
        others = [uid for uid, c in late if not Confidentiality(c).permits(level)]
        # One insert per group, not one per clerk: a city-wide instruction may have thousands.
        if cleared:
            await emit_directive_overdue(w, cleared, **data, title=directive.title)
        if others:
            await emit_directive_overdue(w, others, **data)


async def run_reminders(ctx: Context) -> None:
    """``Feature.background`` entry: this node's scheduler."""
    await started_runtime(ctx).reminders.run()
