"""Signing in: password check with lock-out after repeated failures."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from server.auth.models import LoginThrottle
from server.auth.passwords import verify_password
from server.context import Context
from server.errors import TooManyRequests, Unauthorized
from server.org.models import User
from server.org.service import user_json


async def login(ctx: Context, username: str, password: str, client: str) -> dict[str, Any]:
    """Check the password; answer a token, or count the failure and maybe lock the name.

    Failures are counted per username whether or not the account exists, and unknown
    names cost a password verification too, so neither the answer nor its timing tells
    whether a username exists.
    """
    settings = ctx.settings
    now = ctx.clock.now()
    async with ctx.read() as session:
        throttle = await session.get(LoginThrottle, username)
        user = (
            await session.execute(select(User).where(User.username == username))
        ).scalar_one_or_none()
    _refuse_if_locked(throttle, now)
    valid = await verify_password(user.password_hash if user else None, password)
    ok = valid and user is not None and user.active
    async with ctx.write() as w:
        row = await w.session.get(LoginThrottle, username)
        # Attempts that were already verifying when the lock-out began are refused too.
        _refuse_if_locked(row, now)
        if ok:
            if row is not None:
                await w.session.delete(row)
            await w.audit(user.id if user else None, "auth.login", f"user:{username}",
                          {"client": client})
        else:
            if row is None:
                row = LoginThrottle(username=username, failures=0)
                w.session.add(row)
            if row.locked_until is not None and row.locked_until <= now:
                row.failures = 0
                row.locked_until = None
            row.failures += 1
            locked = row.failures >= settings.login_max_failures
            if locked:
                row.locked_until = now + timedelta(seconds=settings.login_lockout_secs)
            await w.audit(None, "auth.login_failed", f"user:{username}",
                          {"client": client, "failures": row.failures, "locked": locked})
    if not ok or user is None:
        raise Unauthorized("Wrong username or password.", code="invalid_credentials")
    token, ttl = ctx.tokens.issue(user.id, now)
    public = user_json(user)
    return {
        "access_token": token,
        "token_type": "bearer",
        "expires_in": ttl,
        "user": {key: public[key] for key in ("id", "username", "display_name", "unit_id",
                                               "roles")},
    }


def _refuse_if_locked(throttle: LoginThrottle | None, now: datetime) -> None:
    if throttle is None or throttle.locked_until is None or throttle.locked_until <= now:
        return
    wait = int((throttle.locked_until - now).total_seconds()) + 1
    raise TooManyRequests(
        f"Too many failed sign-ins; try again in {wait} seconds.", code="locked_out",
        details={"retry_after": wait},
    )
