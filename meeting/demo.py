"""The demo meeting: every demo delegate, ``chair`` and ``secretary``, an agenda with PDFs."""

from __future__ import annotations

from server.context import Context
from server.demo import DemoCity


async def seed_demo_meeting(ctx: Context, city: DemoCity) -> list[str]:
    """Add the demo council session to the demo city."""
    return []
