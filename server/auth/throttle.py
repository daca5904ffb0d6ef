"""Sign-in throttles: how long a (username, client address) waits, lifting and forgetting."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select

from server.auth.models import LoginThrottle
from server.context import Context, Write

# Client addresses are stored up to this length (an IPv6 address with a zone fits).
CLIENT_MAX = 64


def throttle_delay(settings: Any, failures: int) -> float:
    """Seconds a (username, client) must wait after ``failures`` failures in a row: none
    for the first ``login_max_failures``, then the base delay doubling with each further
    failure, never more than ``login_lockout_secs``."""
    over = failures - settings.login_max_failures
    if over < 0:
        return 0.0
    # Past 2**30 the cap has long been reached; the exponent stays small.
    return float(
        min(settings.login_delay_base_secs * 2 ** min(over, 30), settings.login_lockout_secs)
    )


async def forget_old_throttles(w: Write, before: datetime) -> int:
    """Delete throttles whose last failure is older than ``before``; how many went."""
    result = await w.session.execute(
        delete(LoginThrottle).where(LoginThrottle.last_failure_at < before)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def lift_throttle(w: Write, actor_id: int | None, username: str) -> int:
    """Remove every sign-in throttle of ``username`` (from any client) in ``w``."""
    result = await w.session.execute(
        delete(LoginThrottle).where(LoginThrottle.username == username)
    )
    lifted = int(getattr(result, "rowcount", 0) or 0)
    await w.audit(actor_id, "auth.throttle_lifted", f"user:{username}", {"throttles": lifted})
    return lifted


async def lift_throttle_of(ctx: Context, actor_id: int | None, username: str) -> int:
    """``lift_throttle`` in its own transaction (the command line and the API)."""
    async with ctx.write() as w:
        return await lift_throttle(w, actor_id, username)


async def throttled_usernames(ctx: Context, usernames: list[str]) -> dict[str, datetime]:
    """Of ``usernames``, those blocked from some client now, with the latest end."""
    if not usernames:
        return {}
    now = ctx.clock.now()
    async with ctx.read() as session:
        rows = await session.execute(
            select(LoginThrottle.username, LoginThrottle.blocked_until).where(
                LoginThrottle.username.in_(usernames), LoginThrottle.blocked_until > now
            )
        )
    found: dict[str, datetime] = {}
    for name, until in rows:
        if name not in found or until > found[name]:
            found[name] = until
    return found
