"""The ``/ws`` gateway, exactly per the contract in DESIGN.md.

1. First frame ``{"op": "auth", "token"}`` within the auth timeout, else close 4401.
   Answer ``ready`` with the current seq of the user's and unit's topics, to which the
   socket is already subscribed.
2. ``subscribe {topics: {name: seq}}`` replays the log after ``seq``, then ``subscribed``,
   then live events; ``reset`` when history was pruned; ``error forbidden`` if not allowed.
3. ``received {topic, seq}`` is gathered and handed to features in batches.
4. ``unsubscribe``, ``ping``/``pong``, ``signal`` (ephemeral, e.g. typing).
5. Features' ops (``ack``, ``read``…, ``ctx.socket_ops``): checked against their declared
   frame, started without holding up the reading of the next frame, each answered ``ok``
   or ``error`` with the client's ``ref``.

Malformed frames close with 4400, a user over its frame rate with 4429, a socket whose
queue overflows with 4408; oversized frames are refused by the server with 1009.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import bindparam, select
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from server.auth.principal import PRINCIPAL_COLUMNS, Principal
from server.context import Context
from server.errors import ApiError, BadRequest, Forbidden
from server.features import Received, SocketOp
from server.group_commit import ShuttingDown
from server.http import principal_for_token
from server.org.models import User
from server.org.service import USER_UPDATED, may_watch_unit
from server.realtime.contract import BadOpFrame
from server.realtime.hub import (
    CLOSE_AUTH,
    CLOSE_FORBIDDEN,
    CLOSE_INTERNAL,
    CLOSE_MALFORMED,
    CLOSE_RATE_LIMITED,
    CLOSE_RESTART,
    Connection,
    close_reason,
    frame,
)
from server.realtime.log import Event
from server.realtime.transport import direct_socket

log = logging.getLogger("dienhong.gateway")

# A socket may follow this many topics at once (a chair panel needs a handful).
MAX_TOPICS_PER_SOCKET = 256
# How often gathered "received" confirmations are handed to the features.
RECEIVED_FLUSH_SECS = 0.1
# Confirmations waiting for a flush before new ones are merged into them per topic.
RECEIVED_BUFFER = 100_000


_PRINCIPAL_NOW = select(*PRINCIPAL_COLUMNS).where(User.id == bindparam("user_id"))


def _user_changed(event: Event) -> list[tuple[int, str | None]]:
    """``user.updated`` on ``user:{id}``: roles, unit or clearance may have changed."""
    return [(int(event.topic.partition(":")[2]), None)]


def what_changed(before: Principal | None, after: Principal) -> str:
    """The reason an ``unsubscribed`` frame gives after a change to the user."""
    if before is None:
        return "access_changed"
    if before.unit_id != after.unit_id:
        return "unit_changed"
    if before.roles != after.roles:
        return "role_changed"
    if before.clearance != after.clearance:
        return "clearance_changed"
    return "access_changed"


class ProtocolError(Exception):
    """A frame that breaks the protocol: the socket is closed with 4400."""


# Largest id or seq a frame may name: the databases store them as signed 64-bit integers.
MAX_INT64 = 2**63 - 1
# Refused topics named in the one audit record of a subscribe frame (the count is whole).
AUDITED_REFUSALS = 20
# The ops of the protocol itself; a feature's op takes another name.
CORE_OPS = frozenset({"auth", "subscribe", "unsubscribe", "received", "ping", "signal"})
# Longest string a client may give as an op's ``ref`` (it comes back in the answer).
MAX_REF_CHARS = 64


class TokenBucket:
    """One user's frame budget, shared by all its sockets on this node.

    It outlives the user's last socket until it has filled up again, so reconnecting
    does not buy a new burst.
    """

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()
        self.sockets = 0

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self) -> bool:
        self._refill()
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def secs_until_full(self) -> float:
        """0 when the bucket is full: forgetting it then loses nothing."""
        self._refill()
        missing = self.burst - self.tokens
        if missing <= 0:
            return 0.0
        return missing / self.rate if self.rate > 0 else float("inf")


def parse_topic(topic: Any) -> tuple[str, int]:
    if not isinstance(topic, str) or len(topic) > 100:
        raise ProtocolError("topic must be a string")
    kind, sep, ident = topic.partition(":")
    if not sep or not ident.isascii() or not ident.isdigit() or int(ident) > MAX_INT64:
        raise ProtocolError(f"malformed topic {topic!r}")
    return kind, int(ident)


def parse_seq(seq: Any, what: str) -> int:
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= MAX_INT64:
        raise ProtocolError(f"{what} must be a non-negative 64-bit integer")
    return seq


class Gateway:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._buckets: dict[int, TokenBucket] = {}
        # (user, topic) -> highest seq confirmed since the last flush.
        self._received: dict[tuple[int, str], int] = {}
        self._flusher: asyncio.Task[None] | None = None
        # Sockets whose access is being checked again -> the reason of a change that came
        # meanwhile (the check runs once more), or None.
        self._rechecking: dict[Connection, list[str | None] | None] = {}
        self._recheck_tasks: set[asyncio.Task[None]] = set()
        # Features' ops (and audits of their refusals) not done yet, held so that none is
        # collected while it runs.
        self._ops: set[asyncio.Future[Any]] = set()
        ctx.hub.event_views.update(ctx.event_views)
        changes = {USER_UPDATED: _user_changed, **ctx.access_changes}
        for type_, concerned in changes.items():
            ctx.hub.access_watch[type_] = self._watcher(concerned)

    # --- access that changed while sockets are open -------------------------------------
    def _watcher(self, concerned: Any) -> Any:
        def watch(event: Event) -> None:
            for user_id, reason in concerned(event):
                self.access_changed(int(user_id), reason)

        return watch

    def access_changed(self, user_id: int, reason: str | None) -> None:
        """Hold the user's subscriptions on this node now and check each one again."""
        for connection in self.ctx.hub.hold_user(user_id):
            if connection in self._rechecking:
                pending = self._rechecking[connection] or []
                pending.append(reason)
                self._rechecking[connection] = pending
                continue
            self._rechecking[connection] = None
            task = asyncio.create_task(self._recheck(connection, reason))
            self._recheck_tasks.add(task)
            task.add_done_callback(self._recheck_tasks.discard)

    async def _recheck(self, connection: Connection, reason: str | None) -> None:
        hub = self.ctx.hub
        # Reasons compare with the user as the socket knew it before this check.
        before = connection.principal
        try:
            while not connection.closed:
                row = await self.ctx.db.read_row(_PRINCIPAL_NOW, {"user_id": connection.user_id})
                if row is None or not row.active:
                    connection.close(CLOSE_AUTH, "the account is no longer active")
                    return
                principal = Principal.of_row(row)
                connection.principal = principal
                why = reason or what_changed(before, principal)
                allowed = []
                for subscription in list(connection.subscriptions.values()):
                    if await self.may_subscribe(principal, subscription.topic):
                        allowed.append(subscription)
                    else:
                        hub.revoke(subscription, why)
                pending = self._rechecking.get(connection)
                if pending:
                    # Changed again meanwhile: check again before anything is released.
                    self._rechecking[connection] = None
                    reason = next((r for r in pending if r is not None), None)
                    continue
                for subscription in allowed:
                    hub.release(subscription)
                return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("checking the access of user %s again failed", connection.user_id)
            connection.close(CLOSE_RESTART)
        finally:
            self._rechecking.pop(connection, None)

    # --- received confirmations, in batches --------------------------------------
    def _note_received(self, user_id: int, topic: str, seq: int) -> None:
        key = (user_id, topic)
        if self._received.get(key, -1) < seq and len(self._received) < RECEIVED_BUFFER:
            self._received[key] = seq
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(RECEIVED_FLUSH_SECS)
        await self.flush_received()

    async def flush_received(self) -> None:
        if not self._received:
            return
        batch = [Received(user, topic, seq) for (user, topic), seq in self._received.items()]
        self._received = {}
        for handler in self.ctx.received_handlers:
            try:
                await handler(self.ctx, batch)
            except Exception:
                log.exception("received handler %r failed", handler)

    # --- the socket ------------------------------------------------------------------
    def origin_allowed(self, websocket: WebSocket) -> bool:
        origin = websocket.headers.get("origin")
        if origin is None:
            # Not a browser (tablet apps, tests, bench): Origin is a browser protection.
            return True
        if origin in self.ctx.settings.allowed_origins or "*" in self.ctx.settings.allowed_origins:
            return True
        host = websocket.headers.get("host", "")
        return urlsplit(origin).netloc == host

    async def serve(self, websocket: WebSocket) -> None:
        if not self.origin_allowed(websocket):
            # Refused before accept: the browser sees the handshake fail.
            await websocket.close(code=CLOSE_FORBIDDEN)
            return
        await websocket.accept()
        try:
            principal = await self._authenticate(websocket)
        except Exception:
            # The database (or the SSO issuer's key server) failed: not the client's fault,
            # so not 4401, which would make it sign out.
            log.exception("authenticating a socket failed")
            with contextlib.suppress(Exception):
                await websocket.close(code=CLOSE_INTERNAL)
            return
        if principal is None:
            return
        settings = self.ctx.settings
        hub = self.ctx.hub

        async def close(code: int, reason: str) -> None:
            if websocket.application_state != WebSocketState.DISCONNECTED:
                await websocket.close(code=code, reason=reason)

        connection = Connection(
            hub,
            principal.id,
            principal.unit_id,
            websocket.send_text,
            close,
            settings.ws_send_queue_frames,
            direct_socket(websocket.scope),
            queue_bytes=settings.ws_send_queue_bytes,
        )
        connection.principal = principal
        bucket = self._buckets.get(principal.id)
        if bucket is None:
            bucket = TokenBucket(settings.ws_rate_per_sec, settings.ws_rate_burst)
            self._buckets[principal.id] = bucket
        bucket.sockets += 1
        hub.attach(connection)
        try:
            await self._start(connection, principal)
            for hook in self.ctx.connection_hooks:
                await hook(self.ctx, principal, True)
            await self._read_loop(websocket, connection, principal, bucket)
        except WebSocketDisconnect:
            log.debug("socket of user %s went away", principal.id)
        except Exception:
            log.exception("socket of user %s failed", principal.id)
            connection.close(CLOSE_INTERNAL)
        finally:
            await connection.finish()
            hub.detach(connection)
            bucket.sockets -= 1
            self._forget_bucket_when_full(principal.id, bucket)
            for hook in self.ctx.connection_hooks:
                try:
                    await hook(self.ctx, principal, False)
                except Exception:
                    log.exception("disconnect hook failed")

    def _forget_bucket_when_full(self, user_id: int, bucket: TokenBucket) -> None:
        """Drop a user's bucket once no socket uses it and it has filled up again."""
        if bucket.sockets > 0 or self._buckets.get(user_id) is not bucket:
            return
        wait = bucket.secs_until_full()
        if wait <= 0:
            del self._buckets[user_id]
        elif wait != float("inf"):
            asyncio.get_running_loop().call_later(
                wait, self._forget_bucket_when_full, user_id, bucket
            )

    async def _authenticate(self, websocket: WebSocket) -> Principal | None:
        try:
            # A deadline on this task, not a task of its own per socket (``wait_for``).
            async with asyncio.timeout(self.ctx.settings.ws_auth_timeout_secs):
                text = await websocket.receive_text()
            message = json.loads(text)
            if not isinstance(message, dict) or message.get("op") != "auth":
                raise ValueError("the first frame must be auth")
            token = message.get("token")
            if not isinstance(token, str):
                raise ValueError("auth needs a token")
            return await principal_for_token(self.ctx, token)
        except WebSocketDisconnect:
            return None
        except TimeoutError:
            reason = "no auth frame in time"
        except json.JSONDecodeError:
            reason = "the first frame must be auth"
        except ValueError as exc:
            reason = str(exc)
        except ApiError as exc:
            reason = exc.message
        except (KeyError, RuntimeError):
            # A binary frame, or a socket closed meanwhile.
            reason = "the first frame must be auth"
        with contextlib.suppress(Exception):
            await websocket.close(code=CLOSE_AUTH, reason=close_reason(reason))
        return None

    async def _start(self, connection: Connection, principal: Principal) -> None:
        hub = self.ctx.hub
        topics = [f"user:{principal.id}", f"unit:{principal.unit_id}"]
        subscriptions = [hub.subscribe(connection, topic, 0) for topic in topics]
        seqs = await hub.read_current_seqs(topics)
        for subscription in subscriptions:
            subscription.last_seq = seqs[subscription.topic]
        # Started first, so ``ready`` can go straight to the socket like any frame (the
        # subscriptions are still catching up: nothing else can come before it).
        connection.start()
        connection.push(frame(op="ready", user_id=principal.id, topics=seqs))
        for subscription in subscriptions:
            if subscription.dirty:
                # An event came while the seqs were read: catch up from the log.
                hub.start_catch_up(subscription, announce=False)
            else:
                # Registered before the seqs were read, nothing came since: every later
                # event reaches this subscription live, so go live without a query (a
                # reconnect storm of thousands of sockets must not cost 4 queries each).
                subscription.catching_up = False

    async def _read_loop(
        self,
        websocket: WebSocket,
        connection: Connection,
        principal: Principal,
        bucket: TokenBucket,
    ) -> None:
        while not connection.closed:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if not bucket.take():
                connection.close(CLOSE_RATE_LIMITED, "more frames than this account may send")
                return
            text = message.get("text")
            try:
                if text is None:
                    raise ProtocolError("binary frames are not part of the protocol")
                await self._handle(connection, principal, text)
            except ProtocolError as exc:
                log.info("closing socket of user %s: %s", principal.id, exc)
                connection.close(CLOSE_MALFORMED, str(exc))
                return

    async def _handle(self, connection: Connection, principal: Principal, text: str) -> None:
        # As of the last access check: roles, unit or clearance may have changed since auth.
        principal = connection.principal or principal
        try:
            message = json.loads(text)
        except (ValueError, RecursionError) as exc:
            # Not JSON, nested too deep, or a number too long to read: the client's fault.
            raise ProtocolError("not JSON the protocol can read") from exc
        if not isinstance(message, dict):
            raise ProtocolError("a frame is a JSON object")
        op = message.get("op")
        if op == "ping":
            connection.push(frame(op="pong"))
        elif op == "subscribe":
            await self._subscribe(connection, principal, message.get("topics"))
        elif op == "unsubscribe":
            names = message.get("topics")
            if not isinstance(names, list):
                raise ProtocolError("unsubscribe needs a list of topics")
            for name in names:
                parse_topic(name)
                subscription = connection.subscriptions.get(name)
                if subscription is not None:
                    self.ctx.hub.remove(subscription)
        elif op == "received":
            topic, seq = message.get("topic"), message.get("seq")
            parse_topic(topic)
            assert isinstance(topic, str)  # parse_topic refuses anything else
            seq = parse_seq(seq, "the seq of received")
            subscription = connection.subscriptions.get(topic)
            # Only what this socket was actually sent can be confirmed.
            if subscription is not None and seq <= subscription.last_seq:
                self._note_received(principal.id, topic, seq)
        elif op == "signal":
            await self._signal(connection, principal, message)
        elif isinstance(op, str) and op in self.ctx.socket_ops:
            self._start_op(connection, principal, self.ctx.socket_ops[op], message)
        else:
            raise ProtocolError(f"unknown op {op!r}")

    # --- features' ops -------------------------------------------------------------------
    def _start_op(
        self, connection: Connection, principal: Principal, op: SocketOp, message: dict[str, Any]
    ) -> None:
        """Start the op and answer it when it is done; the next frame is read meanwhile
        (an acknowledgement waits for its group commit, not for the one before it)."""
        ref = message.get("ref")
        bad_ref = not (
            ref is None
            or (isinstance(ref, str) and len(ref) <= MAX_REF_CHARS)
            or (isinstance(ref, int) and not isinstance(ref, bool) and abs(ref) <= MAX_INT64)
        )
        if bad_ref:
            ref = None

        def answer(outcome: dict[str, Any] | BaseException) -> None:
            if isinstance(outcome, BaseException):
                error = outcome if isinstance(outcome, ApiError) else None
                if error is None:
                    log.error(
                        "op %s of user %s failed", op.contract.name, principal.id, exc_info=outcome
                    )
                    error = ApiError(
                        "The server ran into an error; try again.",
                        code="internal_error",
                        status=500,
                    )
                connection.push(frame(op="error", ref=ref, code=error.code, message=error.message))
                if isinstance(error, Forbidden):
                    self._audit_refusal(principal, op.contract.name, error)
            else:
                connection.push(frame(op="ok", ref=ref, data=outcome))

        try:
            if bad_ref:
                raise BadOpFrame(
                    f"ref must be a string of at most {MAX_REF_CHARS} characters or an integer"
                )
            op.contract.check(message)
            pending = asyncio.ensure_future(op.handle(self.ctx, principal, message))
        except BadOpFrame as exc:
            answer(BadRequest(str(exc)))
            return
        except ApiError as exc:
            answer(exc)
            return

        def done(future: asyncio.Future[dict[str, Any]]) -> None:
            self._ops.discard(future)
            if future.cancelled():
                answer(ShuttingDown("The server is stopping; try again shortly."))
            else:
                answer(future.exception() or future.result())

        self._ops.add(pending)
        pending.add_done_callback(done)

    def _audit_refusal(self, principal: Principal, op: str, error: ApiError) -> None:
        """A refused op leaves the record a refused HTTP request leaves (``api_error``)."""

        async def write() -> None:
            try:
                async with self.ctx.write() as w:
                    await w.audit(
                        principal.id,
                        "access.refused",
                        f"ws {op}",
                        {"code": error.code, "message": error.message},
                    )
            except Exception:
                log.exception("could not audit a refusal")

        task = asyncio.create_task(write())
        self._ops.add(task)
        task.add_done_callback(self._ops.discard)

    async def _subscribe(self, connection: Connection, principal: Principal, topics: Any) -> None:
        if not isinstance(topics, dict) or not topics:
            raise ProtocolError("subscribe needs an object of topic: seq")
        most = self.ctx.settings.ws_max_topics_per_frame
        if len(topics) > most:
            raise ProtocolError(f"a subscribe frame names at most {most} topics")
        requested: list[tuple[str, int]] = []
        for name, seq in topics.items():
            parse_topic(name)
            requested.append((name, parse_seq(seq, f"seq of {name}")))
        refused: list[str] = []
        for name, seq in requested:
            if name not in connection.subscriptions and (
                len(connection.subscriptions) >= MAX_TOPICS_PER_SOCKET
            ):
                connection.push(
                    frame(
                        op="error",
                        code="too_many_topics",
                        topic=name,
                        message=f"At most {MAX_TOPICS_PER_SOCKET} topics.",
                    )
                )
                continue
            if not await self.may_subscribe(principal, name):
                connection.push(
                    frame(
                        op="error",
                        code="forbidden",
                        topic=name,
                        message=f"You may not follow {name}.",
                    )
                )
                refused.append(name)
                continue
            subscription = self.ctx.hub.subscribe(connection, name, seq)
            if connection in self._rechecking:
                # The user's access is being checked again: this subscription waits for
                # that check too (it may have been judged by the user as they were), and
                # is replayed as the user is now.
                subscription.held = True
                subscription.announce_pending = True
                pending = self._rechecking[connection] or []
                pending.append(None)
                self._rechecking[connection] = pending
                continue
            self.ctx.hub.start_catch_up(subscription, announce=True)
        if refused:
            # One record per frame, however many topics it was refused.
            async with self.ctx.write() as w:
                await w.audit(
                    principal.id,
                    "access.refused",
                    refused[0],
                    {
                        "op": "subscribe",
                        "count": len(refused),
                        "topics": refused[:AUDITED_REFUSALS],
                    },
                )

    async def may_subscribe(self, principal: Principal, topic: str) -> bool:
        kind, ident = parse_topic(topic)
        if kind == "user":
            return ident == principal.id
        if kind == "unit":
            if ident == principal.unit_id:
                # A user always follows its own unit: no read (a reconnect storm asks it
                # of every socket).
                return True
            async with self.ctx.read() as session:
                return await may_watch_unit(session, principal, ident)
        authorizer = self.ctx.topic_authorizers.get(kind)
        if authorizer is None:
            return False
        return await authorizer(self.ctx, principal, ident)

    async def _signal(
        self, connection: Connection, principal: Principal, message: dict[str, Any]
    ) -> None:
        topic, kind, data = message.get("topic"), message.get("type"), message.get("data", {})
        parse_topic(topic)
        if not isinstance(kind, str) or not isinstance(data, dict):
            raise ProtocolError("signal needs a type and an object of data")
        handler = self.ctx.signal_handlers.get(kind)
        if handler is None or topic not in connection.subscriptions:
            connection.push(
                frame(
                    op="error",
                    code="signal_refused",
                    topic=topic,
                    message=f"Signal {kind!r} is not accepted here.",
                )
            )
            return
        result = await handler(self.ctx, principal, str(topic), data)
        if result is not None:
            await self.ctx.signal(str(topic), kind, result)
