"""Presence (online / away / offline) and typing indicators: ephemeral, never logged.

Each node counts its own sockets per user (connection hooks) and the away flag a client
sets with the ``presence`` signal. Changes go out as ``presence.changed`` signals on the
user's ``unit:`` topic; typing goes out as ``typing`` signals on ``channel:`` topics.

Where presence lives: with one node (no Redis) the node's memory is the whole truth. When
Redis is configured, each node also mirrors its users' states into its own Redis hash
(``<redis_channel>:presence:<node>``) with a time-to-live it refreshes, and a unit's
presence ("18 of 25 online") merges every node's hash. A node that dies stops refreshing
and its users fall back to offline when the key expires, without anyone cleaning up.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import aliased

from messaging.models import ChannelMember
from messaging.runtime import started_runtime
from server.auth.principal import Principal
from server.context import Context
from server.errors import Forbidden, Unprocessable
from server.org.models import User
from server.org.service import get_unit, may_watch_unit

log = logging.getLogger("dienhong.messaging.presence")


class PresenceState(enum.StrEnum):
    ONLINE = "online"
    AWAY = "away"
    OFFLINE = "offline"


_RANK = {PresenceState.OFFLINE: 0, PresenceState.AWAY: 1, PresenceState.ONLINE: 2}


class PresenceTracker:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.node = uuid.uuid4().hex[:12]
        self._sockets: dict[int, int] = {}
        self._away: set[int] = set()
        self._units: dict[int, int] = {}
        self._redis: Any = None
        self._pending: dict[int, Principal] = {}
        self._pending_wake = asyncio.Event()
        self._mirror: asyncio.Task[None] | None = None
        if ctx.settings.redis_url:
            import redis.asyncio as aioredis

            self._redis = aioredis.from_url(
                ctx.settings.redis_url, socket_connect_timeout=2, socket_timeout=5
            )

    @property
    def _prefix(self) -> str:
        return f"{self.ctx.settings.redis_channel}:presence:"

    @property
    def _key(self) -> str:
        return self._prefix + self.node

    def local_state(self, user_id: int) -> PresenceState:
        if self._sockets.get(user_id, 0) <= 0:
            return PresenceState.OFFLINE
        return PresenceState.AWAY if user_id in self._away else PresenceState.ONLINE

    async def _publish(self, principal: Principal) -> None:
        if self._redis is None:
            await self._announce(principal, self.local_state(principal.id))
            return
        # Redis is mirrored off the socket's path: a connecting socket (or a reconnect
        # storm of thousands) never waits for Redis, and a Redis that hangs only delays
        # the presence dots. One task mirrors every change made meanwhile in one round trip.
        self._pending[principal.id] = principal
        self._pending_wake.set()
        if self._mirror is None or self._mirror.done():
            self._mirror = asyncio.create_task(self._mirror_forever(), name="presence-mirror")

    async def _mirror_forever(self) -> None:
        while True:
            await self._pending_wake.wait()
            self._pending_wake.clear()
            while self._pending:
                principals, self._pending = list(self._pending.values()), {}
                try:
                    await self._mirror_round(principals)
                except Exception:
                    log.exception("mirroring presence failed")

    async def _mirror_round(self, principals: list[Principal]) -> None:
        assert self._redis is not None
        try:
            # One round trip: a storm of thousands of sockets connecting at once must
            # not cost several each.
            async with asyncio.timeout(self.ctx.settings.broker_timeout_secs):
                gone: list[str] = []
                states: dict[str, str] = {}
                for principal in principals:
                    state = self.local_state(principal.id)
                    if state is PresenceState.OFFLINE:
                        gone.append(str(principal.id))
                    else:
                        states[str(principal.id)] = state.value
                async with self._redis.pipeline(transaction=False) as pipe:
                    # At most three commands, however many users changed.
                    if gone:
                        pipe.hdel(self._key, *gone)
                    if states:
                        pipe.hset(self._key, mapping=states)
                        pipe.expire(self._key, self.ctx.settings.presence_ttl_secs)
                    await pipe.execute()
        except Exception as exc:
            log.warning("presence not mirrored to redis: %s", str(exc) or type(exc).__name__)
        # Online here is the best state there is; otherwise another node may still have
        # the user online or away.
        elsewhere = [p.id for p in principals if self.local_state(p.id) is not PresenceState.ONLINE]
        merged = await self.states(elsewhere) if elsewhere else {}
        for principal in principals:
            await self._announce(
                principal, merged.get(principal.id, self.local_state(principal.id))
            )

    async def _announce(self, principal: Principal, state: PresenceState) -> None:
        await self.ctx.signal(
            f"unit:{principal.unit_id}",
            "presence.changed",
            {"user_id": principal.id, "unit_id": principal.unit_id, "state": state.value},
        )

    async def connected(self, principal: Principal, is_open: bool) -> None:
        before = self.local_state(principal.id)
        if is_open:
            self._sockets[principal.id] = self._sockets.get(principal.id, 0) + 1
            self._units[principal.id] = principal.unit_id
        else:
            left = self._sockets.get(principal.id, 0) - 1
            if left <= 0:
                self._sockets.pop(principal.id, None)
                self._away.discard(principal.id)
                self._units.pop(principal.id, None)
            else:
                self._sockets[principal.id] = left
        if self.local_state(principal.id) is not before:
            await self._publish(principal)

    async def set_away(self, principal: Principal, away: bool) -> None:
        before = self.local_state(principal.id)
        if away:
            self._away.add(principal.id)
        else:
            self._away.discard(principal.id)
        if self.local_state(principal.id) is not before:
            await self._publish(principal)

    async def states(self, user_ids: list[int]) -> dict[int, PresenceState]:
        """Each user's best state over every node."""
        result = {uid: self.local_state(uid) for uid in user_ids}
        if self._redis is None or not user_ids:
            return result
        try:
            fields = [str(uid) for uid in user_ids]
            # Bounded: a Redis that hangs leaves this node's view, not a waiting request.
            async with asyncio.timeout(self.ctx.settings.broker_timeout_secs):
                async for key in self._redis.scan_iter(match=self._prefix + "*", count=100):
                    values = await self._redis.hmget(key, fields)
                    for uid, value in zip(user_ids, values, strict=True):
                        if value is None:
                            continue
                        state = PresenceState(value.decode() if isinstance(value, bytes) else value)
                        if _RANK[state] > _RANK[result[uid]]:
                            result[uid] = state
        except Exception as exc:
            log.warning("presence from redis unavailable, this node's view only: %s", exc)
        return result

    async def refresh_forever(self) -> None:
        """Keep this node's hash alive while it runs; drop it at shutdown."""
        if self._redis is None:
            return
        ttl = self.ctx.settings.presence_ttl_secs
        try:
            while True:
                await asyncio.sleep(max(1.0, ttl / 3))
                try:
                    if self._sockets:
                        mapping = {str(uid): self.local_state(uid).value for uid in self._sockets}
                        async with asyncio.timeout(self.ctx.settings.broker_timeout_secs):
                            await self._redis.hset(self._key, mapping=mapping)
                            await self._redis.expire(self._key, ttl)
                except Exception as exc:
                    log.warning("presence refresh failed: %s", exc)
        finally:
            if self._mirror is not None:
                self._mirror.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._mirror
            try:
                async with asyncio.timeout(self.ctx.settings.broker_timeout_secs):
                    await self._redis.delete(self._key)
            except Exception as exc:
                log.info("presence key not removed at shutdown: %s", exc)
            await self._redis.aclose()


def tracker(ctx: Context) -> PresenceTracker:
    return started_runtime(ctx).presence


async def on_connection(ctx: Context, principal: Principal, is_open: bool) -> None:
    """``connection_hooks`` entry."""
    await tracker(ctx).connected(principal, is_open)


async def presence_signal(
    ctx: Context, principal: Principal, topic: str, data: dict[str, Any]
) -> dict[str, Any] | None:
    """``presence`` signal on the user's own topic: ``{"state": "away"|"online"}``."""
    state = data.get("state")
    if topic != f"user:{principal.id}" or state not in ("away", "online"):
        return None
    await tracker(ctx).set_away(principal, state == "away")
    return None


async def typing_signal(
    ctx: Context, principal: Principal, topic: str, data: dict[str, Any]
) -> dict[str, Any] | None:
    """``typing`` signal on a channel the socket follows (so the user is a member)."""
    if not topic.startswith("channel:"):
        return None
    typing = data.get("typing", True)
    if not isinstance(typing, bool):
        return None
    return {"user_id": principal.id, "display_name": principal.display_name, "typing": typing}


async def unit_presence(ctx: Context, actor: Principal, unit_id: int) -> dict[str, Any]:
    """How many of a unit's users are online ("18 of 25 online") and who."""
    async with ctx.read() as session:
        await get_unit(session, unit_id)
        if not await may_watch_unit(session, actor, unit_id):
            raise Forbidden("You may not see this unit's presence.", code="forbidden")
        users = (
            (
                await session.execute(
                    select(User.id)
                    .where(User.unit_id == unit_id, User.active.is_(True))
                    .order_by(User.id)
                )
            )
            .scalars()
            .all()
        )
    states = await tracker(ctx).states(list(users))
    counts = {state: 0 for state in PresenceState}
    for state in states.values():
        counts[state] += 1
    return {
        "unit_id": unit_id,
        "total": len(users),
        "online": counts[PresenceState.ONLINE],
        "away": counts[PresenceState.AWAY],
        "offline": counts[PresenceState.OFFLINE],
        "users": [{"user_id": uid, "state": states[uid].value} for uid in users],
    }


async def contacts_presence(ctx: Context, actor: Principal, user_ids: list[int]) -> dict[str, Any]:
    """The presence of people the actor talks to: members of a direct or group channel the
    actor is in, or of the actor's own unit (the dots next to direct conversations)."""
    wanted = sorted(set(user_ids))
    if len(wanted) > ctx.settings.max_channel_members:
        raise Unprocessable(
            f"Ask for at most {ctx.settings.max_channel_members} people.", code="too_many_users"
        )
    if not wanted:
        return {"users": []}
    async with ctx.read() as session:
        mine = aliased(ChannelMember)
        theirs = aliased(ChannelMember)
        shared = set(
            (
                await session.execute(
                    select(theirs.user_id)
                    .join(mine, mine.channel_id == theirs.channel_id)
                    .where(
                        mine.user_id == actor.id,
                        mine.member.is_(True),
                        theirs.member.is_(True),
                        theirs.user_id.in_(wanted),
                    )
                )
            )
            .scalars()
            .all()
        )
        colleagues = set(
            (
                await session.execute(
                    select(User.id).where(User.id.in_(wanted), User.unit_id == actor.unit_id)
                )
            )
            .scalars()
            .all()
        )
    strangers = [uid for uid in wanted if uid not in shared | colleagues]
    if strangers:
        raise Forbidden(
            "You share no conversation with some of these people.",
            code="not_a_contact",
            details={"user_ids": strangers},
        )
    states = await tracker(ctx).states(wanted)
    return {"users": [{"user_id": uid, "state": states[uid].value} for uid in wanted]}


async def run_presence(ctx: Context) -> None:
    """``Feature.background`` entry: refresh this node's presence in Redis."""
    await tracker(ctx).refresh_forever()
