"""This node's poll runtime: the ballot box, and wake-ups of the closer, the progress
publisher and the scrubber. Reached through ``poll_runtime(ctx)`` only."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from server.context import Context

if TYPE_CHECKING:
    from meeting.polls.ballot_box import BallotBox
    from meeting.polls.sealing import BallotSeal


@dataclass
class PollRuntime:
    """Per-node state of the polls feature."""

    # The group-commit writer of ballots.
    box: BallotBox
    # Seals the ballots of open secret polls (keys derived from the node's signing key).
    seal: BallotSeal
    deadlines_changed: asyncio.Event = field(default_factory=asyncio.Event)
    progress_wanted: asyncio.Event = field(default_factory=asyncio.Event)
    progress_pending: set[int] = field(default_factory=set)
    # A secret poll closed: the leftovers of the rows its close rewrote should be scrubbed.
    scrub_wanted: asyncio.Event = field(default_factory=asyncio.Event)

    def touch_progress(self, poll_id: int) -> None:
        self.progress_pending.add(poll_id)
        self.progress_wanted.set()


def poll_runtime(ctx: Context) -> PollRuntime:
    """This node's poll runtime, created on first use."""

    def make() -> PollRuntime:
        from meeting.polls.ballot_box import BallotBox
        from meeting.polls.sealing import BallotSeal

        return PollRuntime(box=BallotBox(ctx), seal=BallotSeal.for_settings(ctx.settings))

    return ctx.runtimes.setdefault(PollRuntime, make)
