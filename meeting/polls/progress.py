"""``poll.progress {cast}``: coalesced, at most one per poll per interval on each node."""

from __future__ import annotations

import asyncio
import logging

from meeting.events import emit_poll_progress
from meeting.polls.models import (
    PollState,
)
from meeting.polls.runtime import poll_runtime
from meeting.polls.views import cast_count, lock_poll
from server.context import Context

log = logging.getLogger("dienhong.polls")


async def publish_progress(ctx: Context, poll_id: int) -> None:
    """Emit ``poll.progress {cast}`` for an open poll (nothing once it is closed)."""
    async with ctx.write() as w:
        poll = await lock_poll(w.session, poll_id, exclusive=False)
        if poll.lifecycle is not PollState.OPEN:
            return
        cast = await cast_count(w.session, poll.id)
        await emit_poll_progress(w, poll.meeting_id, poll_id=poll.id, cast=cast)


async def run_progress(ctx: Context) -> None:
    """Coalesce ballots into at most one ``poll.progress`` per poll per interval."""
    rt = poll_runtime(ctx)
    while True:
        await rt.progress_wanted.wait()
        rt.progress_wanted.clear()
        pending, rt.progress_pending = rt.progress_pending, set()
        for poll_id in sorted(pending):
            try:
                await publish_progress(ctx, poll_id)
            except Exception:
                log.exception("publishing the progress of poll %d failed", poll_id)
        # A throttle on this node's own output, not a deadline of the domain: loop time.
        await asyncio.sleep(ctx.settings.coalesce_interval_secs)
