"""Closing polls at their deadline."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from meeting.polls.lifecycle import close_poll
from meeting.polls.models import (
    Poll,
    PollState,
)
from meeting.polls.runtime import poll_runtime
from server.context import Context

log = logging.getLogger("dienhong.polls")


async def _next_deadline(ctx: Context) -> datetime | None:
    async with ctx.read() as session:
        stmt = select(func.min(Poll.closes_at)).where(
            Poll.state == PollState.OPEN.value, Poll.closes_at.is_not(None)
        )
        value = (await session.execute(stmt)).scalar_one_or_none()
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


async def close_due_polls(ctx: Context) -> int:
    """Close every open poll whose deadline has passed; returns how many it closed."""
    now = ctx.clock.now()
    async with ctx.read() as session:
        due = (
            (
                await session.execute(
                    select(Poll.id)
                    .where(
                        Poll.state == PollState.OPEN.value,
                        Poll.closes_at.is_not(None),
                        Poll.closes_at <= now,
                    )
                    .order_by(Poll.closes_at, Poll.id)
                )
            )
            .scalars()
            .all()
        )
    closed = 0
    for poll_id in due:
        if await close_poll(ctx, None, int(poll_id)) is not None:
            closed += 1
    return closed


async def _wait_first(*aws: Any) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def run_closer(ctx: Context) -> None:
    """Close polls at their deadline. Deadlines live in the database, so a restart (or
    another node) picks them up; opening a poll on this node wakes it at once."""
    rt = poll_runtime(ctx)
    recheck = timedelta(seconds=ctx.settings.poll_closer_recheck_secs)
    while True:
        try:
            rt.deadlines_changed.clear()
            due = await _next_deadline(ctx)
            now = ctx.clock.now()
            if due is not None and due <= now:
                await close_due_polls(ctx)
                continue
            wake_at = now + recheck if due is None else min(due, now + recheck)
            await _wait_first(rt.deadlines_changed.wait(), ctx.clock.sleep_until(wake_at))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("closing polls at their deadline failed; retrying")
            await asyncio.sleep(1)
