"""The clock is injected: services ask ``ctx.clock.now()``, timers ``await clock.sleep_until()``.

Production uses ``SystemClock``. Tests use ``ManualClock`` and move time forward with
``advance()``; every task waiting in ``sleep_until`` wakes when its deadline is reached, so
no test ever sleeps to wait for a deadline.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep_until(self, when: datetime) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime) -> None:
        delay = (when - self.now()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)


class ManualClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
        self._changed = asyncio.Condition()

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, when: datetime) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._now >= when)

    async def advance(self, seconds: float) -> None:
        """Move time forward and let every timer that became due run."""
        async with self._changed:
            self._now += timedelta(seconds=seconds)
            self._changed.notify_all()
        # Give woken tasks a chance to do their work before the caller goes on.
        for _ in range(20):
            await asyncio.sleep(0)


def utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()
