"""The hub: this node's fan-out from committed events to its local sockets.

Each socket (``Connection``) has a bounded send queue drained by its own sender task, so a
slow tablet never stalls a broadcast; one whose queue overflows is closed with 4408 and
resumes from its last seq. Each subscription of a socket to a topic remembers the last seq
it was sent and accepts only the next one; anything else makes it catch up from the log.

The hub itself remembers, per topic with local subscribers, the highest seq it fanned out.
An event that arrives past a gap (a broker dropped or reordered a message) first has the
gap filled from the log, once for all sockets. A periodic sweep compares those positions
with the log, which recovers events whose broker message never came at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from server.batched_reads import BatchedReads
from server.db import Database
from server.metrics import Metrics
from server.realtime.log import (
    Event,
    TopicPosition,
    current_seqs,
    read_events,
    read_events_of_many,
    topic_positions,
)
from server.realtime.transport import DirectSocket, PreparedFrame

log = logging.getLogger("dienhong.hub")

# WebSocket close codes of the contract.
CLOSE_MALFORMED = 4400
CLOSE_AUTH = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_SLOW = 4408
CLOSE_RATE_LIMITED = 4429
# Standard "service restart": the client should reconnect and resume.
CLOSE_RESTART = 1012
# Standard "internal error": something failed on the server; the client reconnects.
CLOSE_INTERNAL = 1011
# How long a finished socket waits for its close frame to be written.
CLOSE_FRAME_WAIT_SECS = 2.0

Sender = Callable[[str], Awaitable[None]]
# A topic's position in the log and its next events after an asked seq.
CatchUpRead = tuple[TopicPosition, Sequence[Event]]
Closer = Callable[[int, str], Awaitable[None]]
# Longest reason a close frame carries (RFC 6455: 125 bytes of payload, 2 for the code).
MAX_CLOSE_REASON_BYTES = 123


def close_reason(text: str) -> str:
    """``text`` cut to what a close frame holds, on a character boundary."""
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= MAX_CLOSE_REASON_BYTES:
        return encoded.decode("utf-8")
    return encoded[: MAX_CLOSE_REASON_BYTES - 3].decode("utf-8", "ignore") + "..."


def frame(**fields: Any) -> str:
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Signal:
    """An ephemeral message (typing, presence): fanned out live, never logged."""

    topic: str
    type: str
    data: dict[str, Any]

    @property
    def frame(self) -> str:
        return frame(op="signal", topic=self.topic, type=self.type, data=self.data)


class Connection:
    """One authenticated socket: its bounded queue, its sender and its subscriptions.

    A frame goes straight into the socket's transport when the server offers a direct
    write path (``server.realtime.transport``), nothing of this socket waits and its write
    buffer has room: a broadcast to thousands of sockets costs no task and no ASGI layer
    per socket. Otherwise frames wait in a bounded queue and one sender task per socket
    writes them in order, so a slow socket only ever delays itself. The sender runs while
    there is something to write and ends when the queue is empty (the next frame starts a
    new one): thousands of idle sockets hold no task and no queue machinery.
    """

    __slots__ = (
        "_byte_limit",
        "_bytes",
        "_close",
        "_closing",
        "_direct",
        "_limit",
        "_queue",
        "_room",
        "_send",
        "_sender",
        "_started",
        "closed",
        "hub",
        "principal",
        "subscriptions",
        "unit_id",
        "user_id",
    )

    def __init__(
        self,
        hub: Hub,
        user_id: int,
        unit_id: int,
        send: Sender,
        close: Closer,
        queue_size: int,
        direct: DirectSocket | None = None,
        queue_bytes: int = 0,
    ) -> None:
        self.hub = hub
        self.user_id = user_id
        self.unit_id = unit_id
        # Who the socket acts for, as of its last access check (the gateway keeps it).
        self.principal: Any = None
        self._send = send
        self._direct = direct
        self._close = close
        # Each waiting frame with its size in UTF-8 bytes: the queue is bounded by both.
        self._queue: deque[tuple[str, int]] = deque()
        self._limit = queue_size
        self._byte_limit = queue_bytes if queue_bytes > 0 else None
        self._bytes = 0
        self.subscriptions: dict[str, Subscription] = {}
        self.closed = False
        self._started = False
        self._sender: asyncio.Task[None] | None = None
        # Resolved when the sender takes a frame: catch-up waiting for room goes on.
        self._room: asyncio.Future[None] | None = None
        self._closing: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin writing; frames pushed before (``ready``) go first."""
        self._started = True
        self._kick()

    def _kick(self) -> None:
        if self._started and self._sender is None and self._queue and not self.closed:
            self._sender = asyncio.create_task(self._run_sender())

    async def _run_sender(self) -> None:
        queue = self._queue
        try:
            while queue and not self.closed:
                text, size = queue.popleft()
                self._bytes -= size
                self._wake_room()
                await self._send(text)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.debug("send failed for user %s", self.user_id, exc_info=True)
            self.closed = True
        finally:
            if self._sender is asyncio.current_task():
                self._sender = None

    def _wake_room(self) -> None:
        room = self._room
        if room is not None:
            self._room = None
            if not room.done():
                room.set_result(None)

    def push(self, message: str | PreparedFrame) -> bool:
        """Send or queue a frame without waiting; a full queue cuts the socket off with 4408.

        ``message`` is the frame's text, or the frame ready for the wire (an event shared
        by many sockets is encoded and framed once).
        """
        if self.closed:
            return False
        if self._send_direct(message):
            return True
        queue = self._queue
        if isinstance(message, PreparedFrame):
            text, size = message.text, len(message.encoded)
        else:
            text, size = message, len(message.encode())
        if len(queue) >= self._limit or self._over_bytes(size):
            self.hub.metrics.queue_overflows.inc()
            self.close(CLOSE_TOO_SLOW, "too slow: more frames wait than a socket may hold")
            return False
        queue.append((text, size))
        self._bytes += size
        self._kick()
        return True

    def _send_direct(self, message: str | PreparedFrame) -> bool:
        """Write now, below ASGI, when nothing of this socket waits and its buffer has room."""
        if self._queue or self._sender is not None or not self._started or self._direct is None:
            return False
        try:
            prepared = message if isinstance(message, PreparedFrame) else PreparedFrame(message)
            return self._direct.try_send(prepared)
        except Exception:
            log.debug("direct send failed for user %s", self.user_id, exc_info=True)
            return False

    def _over_bytes(self, size: int) -> bool:
        """Would a frame of ``size`` bytes take the queue over its byte bound? A frame
        alone in the queue always fits (one frame is bounded by the frame limits)."""
        limit = self._byte_limit
        return limit is not None and bool(self._queue) and self._bytes + size > limit

    async def push_wait(self, message: str | PreparedFrame) -> None:
        """Queue a frame, waiting for room: catch-up is paced by the client's reading
        (a socket that takes it at once gets it at once, like ``push``)."""
        if self.closed or self._send_direct(message):
            return
        if isinstance(message, PreparedFrame):
            text, size = message.text, len(message.encoded)
        else:
            text, size = message, len(message.encode())
        while not self.closed and (len(self._queue) >= self._limit or self._over_bytes(size)):
            if self._room is None:
                self._room = asyncio.get_running_loop().create_future()
            await self._room
        if not self.closed:
            self._queue.append((text, size))
            self._bytes += size
            self._kick()

    def close(self, code: int, reason: str = "") -> None:
        """Cut the socket off now and send it the close frame ``code`` with ``reason``
        (what a developer reads in the client's log; cut to what a close frame holds).

        Everything the hub holds for it goes at once: a client that stopped reading may
        not take the close frame (it waits behind what the kernel already buffered) for a
        long time, and must not keep its queue or subscriptions meanwhile.
        """
        if self.closed:
            return
        self._release()
        self._closing = asyncio.create_task(self._close_now(code, close_reason(reason)))

    def _release(self) -> None:
        self.closed = True
        if self._sender is not None:
            self._sender.cancel()
        for subscription in list(self.subscriptions.values()):
            self.hub.remove(subscription)
        self.subscriptions.clear()
        self._queue.clear()
        self._bytes = 0
        self._wake_room()
        self.hub.detach(self)

    async def _close_now(self, code: int, reason: str) -> None:
        if self._sender is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._sender
        with contextlib.suppress(Exception):
            await self._close(code, reason)

    async def finish(self) -> None:
        """Called by the gateway when the socket ended: stop the sender, drop subscriptions."""
        self._release()
        if self._sender is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._sender
        if self._closing is not None:
            # Let the close frame go out before the ASGI handler returns (a returned
            # handler makes the server drop the TCP connection without one).
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(self._closing), CLOSE_FRAME_WAIT_SECS)


class Subscription:
    """One socket's interest in one topic.

    A *held* subscription takes no event (live ones only mark it dirty, a catch-up stops)
    until its access was checked again: the user's participation, roles, unit or
    clearance changed. Released, it catches up from the log; refused, it is dropped.
    """

    __slots__ = (
        "announce_pending",
        "catching_up",
        "connection",
        "dirty",
        "held",
        "last_seq",
        "task",
        "topic",
    )

    def __init__(self, connection: Connection, topic: str, last_seq: int) -> None:
        self.connection = connection
        self.topic = topic
        self.last_seq = last_seq
        # While catching up from the log, live events only mark the subscription dirty and
        # the catch-up loop reads again; so nothing slips between the log and live events.
        self.catching_up = True
        self.dirty = False
        self.held = False
        # A catch-up stopped by a hold owes the client its ``subscribed`` frame.
        self.announce_pending = False
        self.task: asyncio.Task[None] | None = None

    def offer(self, event: Event) -> bool:
        """Take a live event; True when it was queued for the socket."""
        if self.catching_up or self.held:
            self.dirty = True
            return False
        if event.seq <= self.last_seq:
            return False
        if event.seq == self.last_seq + 1:
            if self.connection.push(event.prepared):
                self.last_seq = event.seq
                return True
            return False
        self.connection.hub.start_catch_up(self, announce=False)
        return False


class Hub:
    def __init__(self, db: Database, metrics: Metrics, *, resume_batch: int) -> None:
        self.db = db
        self.metrics = metrics
        self.resume_batch = resume_batch
        self.connections: set[Connection] = set()
        # Per topic, its local subscriptions in the order they were made (a dict used as an
        # ordered set): fan-out goes to sockets in a stable order, oldest first.
        self._subscribers: dict[str, dict[Subscription, None]] = {}
        self._fanned: dict[str, int] = {}
        # Topics the last sweep found behind the log, with the log's seq then.
        self._behind: dict[str, int] = {}
        self._lock = asyncio.Lock()
        # Catch-ups from the log, by (topic, after seq), and the current seqs new sockets
        # ask for ``ready``: each asked together is read together.
        self._catch_up_reads: BatchedReads[tuple[str, int], CatchUpRead] = BatchedReads(
            self._read_batch
        )
        self._seqs_reads: BatchedReads[str, int] = BatchedReads(self._read_seqs)
        # Event type -> what to do when an event of it is fanned out here: events that
        # change someone's access (the gateway holds and re-checks their subscriptions).
        self.access_watch: dict[str, Callable[[Event], None]] = {}
        # Event type -> its payload as a socket's principal may see it (None: as it is),
        # applied when events are replayed from the log: what was allowed when an event
        # was written (live events go only to those allowed then) may not be any more.
        self.event_views: dict[str, Callable[[Any, dict[str, Any]], dict[str, Any] | None]] = {}

    # --- sockets ----------------------------------------------------------------
    def attach(self, connection: Connection) -> None:
        self.connections.add(connection)
        self.metrics.open_sockets.set(len(self.connections))

    def detach(self, connection: Connection) -> None:
        self.connections.discard(connection)
        self.metrics.open_sockets.set(len(self.connections))

    def subscribe(self, connection: Connection, topic: str, after_seq: int) -> Subscription:
        """Register a subscription in catch-up state; the caller runs the catch-up."""
        old = connection.subscriptions.get(topic)
        if old is not None:
            self.remove(old)
        subscription = Subscription(connection, topic, after_seq)
        connection.subscriptions[topic] = subscription
        self._subscribers.setdefault(topic, {})[subscription] = None
        return subscription

    def remove(self, subscription: Subscription) -> None:
        if subscription.task is not None and subscription.task is not asyncio.current_task():
            subscription.task.cancel()
        subscription.connection.subscriptions.pop(subscription.topic, None)
        subscribers = self._subscribers.get(subscription.topic)
        if subscribers is not None:
            subscribers.pop(subscription, None)
            if not subscribers:
                del self._subscribers[subscription.topic]
                self._fanned.pop(subscription.topic, None)

    def user_connections(self, user_id: int) -> list[Connection]:
        return [c for c in self.connections if c.user_id == user_id and not c.closed]

    # --- access that changed ------------------------------------------------------------
    def hold_user(self, user_id: int) -> list[Connection]:
        """Hold every subscription of the user's sockets here until it is checked again."""
        connections = self.user_connections(user_id)
        for connection in connections:
            for subscription in connection.subscriptions.values():
                subscription.held = True
        return connections

    def release(self, subscription: Subscription) -> None:
        """Access still holds: resume from the log where the subscription stopped."""
        if not subscription.held:
            return
        subscription.held = False
        announce, subscription.announce_pending = subscription.announce_pending, False
        if subscription.connection.subscriptions.get(subscription.topic) is subscription:
            self.start_catch_up(subscription, announce=announce)

    def revoke(self, subscription: Subscription, reason: str) -> None:
        """Access ended: drop the subscription and tell the socket why."""
        connection = subscription.connection
        if connection.subscriptions.get(subscription.topic) is not subscription:
            return
        self.remove(subscription)
        connection.push(frame(op="unsubscribed", topic=subscription.topic, reason=reason))

    def seen_by(self, connection: Connection, event: Event) -> Event:
        """``event`` as the socket's principal may see it now."""
        view = self.event_views.get(event.type)
        if view is None or connection.principal is None:
            return event
        data = view(connection.principal, event.data)
        if data is None:
            return event
        # Same topic, seq, type and time: the client's position in the log is kept.
        return Event.create(event.topic, event.seq, event.type, data, event.at)

    def _watch(self, event: Event) -> None:
        watcher = self.access_watch.get(event.type)
        if watcher is not None:
            try:
                watcher(event)
            except Exception:
                log.exception("access check after %s failed", event.type)

    # --- catch-up from the log ----------------------------------------------------
    def start_catch_up(self, subscription: Subscription, *, announce: bool) -> None:
        if subscription.task is not None and not subscription.task.done():
            subscription.dirty = True
            return
        subscription.catching_up = True
        subscription.task = asyncio.create_task(self.catch_up(subscription, announce=announce))

    async def catch_up(self, subscription: Subscription, *, announce: bool) -> None:
        """Send every logged event after the subscription's seq, then go live."""
        connection = subscription.connection
        topic = subscription.topic
        subscription.catching_up = True
        try:
            while not connection.closed and not subscription.held:
                subscription.dirty = False
                position, events = await self.read_for_catch_up(topic, subscription.last_seq)
                gone = subscription.last_seq < position.pruned_through
                ahead = subscription.last_seq > position.seq
                if gone or ahead:
                    # History before this point was pruned (or the client's position is
                    # not from this log): it must reload the state over REST.
                    await connection.push_wait(frame(op="reset", topic=topic, seq=position.seq))
                    subscription.last_seq = position.seq
                    continue
                for event in events:
                    if subscription.held:
                        break
                    # Sockets resuming a topic from the same seq share the events read,
                    # so each frame is encoded once for all of them.
                    await connection.push_wait(self.seen_by(connection, event).prepared)
                    subscription.last_seq = event.seq
                    self.metrics.events_delivered.inc()
                if len(events) < self.resume_batch and not subscription.dirty:
                    break
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("catch-up of %s failed; closing the socket so it resumes", topic)
            connection.close(CLOSE_RESTART)
            return
        finally:
            subscription.catching_up = False
        if subscription.held:
            # Access is being checked again: the release resumes (and announces).
            subscription.announce_pending = subscription.announce_pending or announce
            return
        if announce:
            connection.push(frame(op="subscribed", topic=topic, seq=subscription.last_seq))

    async def read_for_catch_up(self, topic: str, after_seq: int) -> CatchUpRead:
        """The topic's position and its next logged events after ``after_seq``.

        Every catch-up that asks in the same tick (or while a read is under way) is
        answered by one read: one statement for the positions of all their topics and one
        for the events past each asked seq. A reconnect storm of thousands of sockets
        costs a few reads, not a session per topic of each socket.
        """
        return await self._catch_up_reads.get((topic, after_seq))

    async def read_current_seqs(self, topics: Sequence[str]) -> dict[str, int]:
        """The newest seq of each topic; sockets that ask in the same tick (or while a
        read is under way) share one read."""
        return await self._seqs_reads.get_many(topics)

    async def _read_seqs(self, topics: Sequence[str]) -> dict[str, int]:
        # Single statements: no transaction around them (each chunk of topics stands alone).
        return await current_seqs(self.db.read_rows, topics)

    async def _read_batch(
        self, asked: Sequence[tuple[str, int]]
    ) -> dict[tuple[str, int], CatchUpRead]:
        async with self.db.read_session() as session:
            positions = await topic_positions(session, (topic for topic, _ in asked))
            # Only what can be replayed: not pruned, not ahead of the log, not current.
            wanted = [
                (topic, after)
                for topic, after in asked
                if positions[topic].pruned_through <= after < positions[topic].seq
            ]
            events = await read_events_of_many(session, wanted, self.resume_batch) if wanted else {}
        return {key: (positions[key[0]], events.get(key, [])) for key in asked}

    # --- live events ---------------------------------------------------------------
    async def dispatch(self, events: Sequence[Event]) -> None:
        """Fan committed events out to local subscribers, filling gaps from the log.

        Events come in the order they were written, so each topic's seqs ascend; one that
        does not fit (a gap, or one already fanned out) is handled by the gap check. The
        common case - the next seq of a topic - costs no await and no query.
        """
        delivered = 0
        async with self._lock:
            subscribers_of = self._subscribers
            fanned = self._fanned
            watched = self.access_watch
            for event in events:
                if event.topic not in subscribers_of:
                    if event.type in watched:
                        self._watch(event)
                    continue
                floor = fanned.get(event.topic)
                if floor is None:
                    # Nobody here follows it live yet: this event is the first to fan out.
                    floor = self._floor(event.topic)
                    if floor is None:
                        floor = event.seq - 1
                if event.seq <= floor:
                    continue
                if event.seq > floor + 1:
                    delivered += await self._fill_gap(event.topic, floor, event.seq)
                delivered += self._fan(event)
        if delivered:
            # One (locked) counter update per batch, not per socket or event.
            self.metrics.events_delivered.inc(delivered)

    async def _fill_gap(self, topic: str, floor: int, seq: int) -> int:
        """Fan out, from the log, the events of ``topic`` between ``floor`` and ``seq``."""
        async with self.db.read_session() as session:
            missing = await read_events(session, topic, floor, seq - floor - 1, up_to=seq - 1)
        self.metrics.events_recovered.inc(len(missing))
        return sum(self._fan(earlier) for earlier in missing)

    def _fan(self, event: Event) -> int:
        """Offer ``event`` to every local subscriber of its topic; how many took it."""
        delivered = 0
        for subscription in list(self._subscribers.get(event.topic, ())):
            if subscription.offer(event):
                delivered += 1
        self._fanned[event.topic] = event.seq
        if event.type in self.access_watch:
            # After the event itself: a removed participant still learns of its removal.
            self._watch(event)
        return delivered

    def fan_signal(self, signal: Signal) -> None:
        subscribers = self._subscribers.get(signal.topic)
        if not subscribers:
            return
        # Encoded and framed once for every socket (presence goes to a whole unit).
        prepared = PreparedFrame(signal.frame)
        for subscription in list(subscribers):
            # A socket still starting (no ``ready`` yet) or catching up skips ephemeral
            # signals, so nothing ever comes before ``ready`` or between replayed events.
            if not subscription.catching_up and not subscription.held:
                subscription.connection.push(prepared)

    async def sweep(self) -> None:
        """Recover at once every local topic that is behind the log (the broker was away)."""
        await self._sweep(patient=False)

    async def _sweep(self, *, patient: bool) -> None:
        """Compare every local topic with the log and fan out what the broker lost.

        A patient sweep (the periodic one) recovers a topic only when it was already
        behind, at least as far, at the previous sweep: an event whose broker message is
        still on its way gets a whole interval to arrive, so a sweep that runs while a
        round of thousands of events is in flight does not read them all again.
        """
        topics = list(self._subscribers)
        behind_now: dict[str, int] = {}
        recovered: list[Event] = []
        if topics:
            async with self.db.read_session() as session:
                newest = await current_seqs(session, topics)
                for topic, seq in newest.items():
                    floor = self._floor(topic)
                    if floor is None or seq <= floor:
                        continue
                    behind_now[topic] = seq
                    seen = self._behind.get(topic)
                    if not patient or (seen is not None and floor < seen):
                        recovered.extend(
                            await read_events(session, topic, floor, self.resume_batch)
                        )
        self._behind = behind_now
        if recovered:
            self.metrics.events_recovered.inc(len(recovered))
            await self.dispatch(recovered)

    def _floor(self, topic: str) -> int | None:
        """The highest seq fanned out on ``topic``, or None if nobody here follows it live."""
        subscribers = self._subscribers.get(topic)
        if not subscribers:
            return None
        floor = self._fanned.get(topic)
        if floor is None:
            live = [s.last_seq for s in subscribers if not s.catching_up and not s.held]
            if not live:
                return None
            floor = min(live)
        return floor

    async def run_sweeper(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self._sweep(patient=True)
            except Exception:
                log.exception("log sweep failed")

    async def close_all(self, code: int) -> None:
        for connection in list(self.connections):
            connection.close(code)
