"""Signing in: password check, a growing delay per (username, client address) after
repeated failures, and the end of every token of a user at once."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from server.auth.models import LoginThrottle
from server.auth.passwords import (
    PasswordProblem,
    hash_password,
    password_problem,
    verify_password,
)
from server.auth.principal import Principal
from server.auth.throttle import CLIENT_MAX, forget_old_throttles, throttle_delay
from server.context import Context
from server.errors import NotFound, TooManyRequests, Unauthorized, Unprocessable
from server.org.models import User
from server.org.service import end_sessions, user_json


async def login(ctx: Context, username: str, password: str, client: str) -> dict[str, Any]:
    """Check the password; answer a token, or count the failure and slow that client down.

    Failures are counted per (username, client address) whether or not the account exists,
    and unknown names cost a password verification too, so neither the answer nor its
    timing tells whether a username exists. A guesser elsewhere never delays the real
    user's own sign-in.
    """
    settings = ctx.settings
    now = ctx.clock.now()
    client = client[:CLIENT_MAX]
    async with ctx.read() as session:
        throttle = await session.get(LoginThrottle, (username, client))
        user = (
            await session.execute(select(User).where(User.username == username))
        ).scalar_one_or_none()
    _refuse_if_blocked(throttle, now)
    valid = await verify_password(user.password_hash if user else None, password)
    ok = valid and user is not None and user.active
    async with ctx.write() as w:
        row = await w.session.get(LoginThrottle, (username, client))
        # Attempts that were already verifying when the block began are refused too.
        _refuse_if_blocked(row, now)
        if ok:
            if row is not None:
                await w.session.delete(row)
            await w.audit(
                user.id if user else None, "auth.login", f"user:{username}", {"client": client}
            )
        else:
            if row is None:
                row = LoginThrottle(
                    username=username, client=client, failures=0, last_failure_at=now
                )
                w.session.add(row)
            row.failures += 1
            row.last_failure_at = now
            delay = throttle_delay(settings, row.failures)
            row.blocked_until = now + timedelta(seconds=delay) if delay else None
            await w.audit(
                None,
                "auth.login_failed",
                f"user:{username}",
                {"client": client, "failures": row.failures, "delay_secs": delay},
            )
            await forget_old_throttles(
                w, now - timedelta(seconds=settings.login_throttle_forget_secs)
            )
    if not ok or user is None:
        raise Unauthorized("Wrong username or password.", code="invalid_credentials")
    return session_answer(ctx, user, now)


def session_answer(
    ctx: Context, user: User, now: datetime, ttl: int | None = None
) -> dict[str, Any]:
    """The answer of a sign-in: a token of the user's current version (of ``ttl`` seconds
    at most), and who it is."""
    token, ttl = ctx.tokens.issue(user.id, now, ttl=ttl, ver=user.token_version)
    public = user_json(user)
    return {
        "access_token": token,
        "token_type": "bearer",
        "expires_in": ttl,
        "user": {
            key: public[key] for key in ("id", "username", "display_name", "unit_id", "roles")
        },
        # After an administrator's reset the pages ask for a new password first.
        "must_change_password": user.must_change_password,
    }


def _refuse_if_blocked(throttle: LoginThrottle | None, now: datetime) -> None:
    if throttle is None or throttle.blocked_until is None or throttle.blocked_until <= now:
        return
    wait = int((throttle.blocked_until - now).total_seconds()) + 1
    raise TooManyRequests(
        f"Too many failed sign-ins; try again in {wait} seconds.",
        code="locked_out",
        details={"retry_after": wait},
    )


async def change_own_password(
    ctx: Context, actor: Principal, current: str, new: str
) -> dict[str, Any]:
    """The signed-in user changes its password: every other session ends, and this one
    gets a fresh token."""
    async with ctx.read() as session:
        user = await session.get(User, actor.id)
    if user is None:
        raise NotFound("The account no longer exists.", code="user_not_found")
    if not await verify_password(user.password_hash, current):
        raise Unprocessable("The current password is wrong.", code="wrong_password")
    problem = password_problem(
        new, min_length=ctx.settings.password_min_length, username=user.username
    )
    if problem is None and new == current:
        problem = PasswordProblem("unchanged", "The new password must differ from the current one.")
    if problem is not None:
        raise Unprocessable(problem.message, code="weak_password", details=problem.details())
    new_hash = await hash_password(new)
    async with ctx.write() as w:
        row = await w.session.get(User, actor.id)
        if row is None:
            raise NotFound("The account no longer exists.", code="user_not_found")
        row.password_hash = new_hash
        row.must_change_password = False
        await end_sessions(w, row, reason="password_changed")
        await w.audit(actor.id, "auth.password_changed", f"user:{row.id}", {})
        # The fresh token must find the new version on this node at once.
        w.after_commit(lambda: ctx.principals.forget(actor.id))
        user = row
    return session_answer(ctx, user, ctx.clock.now())
