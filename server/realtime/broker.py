"""Brokers carry committed events from the node that wrote them to every node's hub.

Chosen by URL scheme: ``memory://`` (one process, the embedded default) or ``redis://``
(several processes or machines, Redis pub/sub). A broker is only the fast path: the event
log in the database is the truth, and each hub recovers from it whatever a broker drops.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from server.clock import utc_iso
from server.realtime.hub import Signal
from server.realtime.log import Event, frame_head
from server.realtime.transport import FrameTail

log = logging.getLogger("dienhong.broker")

Deliver = Callable[[Sequence[Event]], Awaitable[None]]
Resync = Callable[[], Awaitable[None]]
DeliverSignal = Callable[[Signal], None]

# Back-off between attempts to reach Redis again, doubling up to the maximum.
REDIS_RETRY_MIN_SECS = 0.2
REDIS_RETRY_MAX_SECS = 5.0
# How long one poll of the subscription waits for a message before checking its health.
REDIS_POLL_SECS = 1.0
# An idle subscription is PINGed this often, so a silently dead connection is noticed.
REDIS_HEALTH_CHECK_SECS = 5
# Events per published message: a large write is split so other nodes can start early.
REDIS_EVENTS_PER_MESSAGE = 200
# The first characters of a message of packed events (``pack_events``): ``E2`` carries
# each distinct frame tail once; ``E1`` (nodes of the previous release) every whole frame.
SHARED_TAILS = "E2"
PACKED_FRAMES = "E1"


class Broker(Protocol):
    async def start(self, deliver: Deliver, deliver_signal: DeliverSignal,
                    resync: Resync) -> None: ...

    async def publish(self, events: Sequence[Event]) -> None: ...

    async def publish_signal(self, signal: Signal) -> None: ...

    async def ping(self) -> None: ...

    async def stop(self) -> None: ...


class MemoryBroker:
    """Hands events straight to this process's hub."""

    def __init__(self) -> None:
        self._deliver: Deliver | None = None
        self._deliver_signal: DeliverSignal | None = None

    async def start(self, deliver: Deliver, deliver_signal: DeliverSignal,
                    resync: Resync) -> None:
        self._deliver = deliver
        self._deliver_signal = deliver_signal

    async def publish(self, events: Sequence[Event]) -> None:
        if self._deliver is not None and events:
            await self._deliver(events)

    async def publish_signal(self, signal: Signal) -> None:
        if self._deliver_signal is not None:
            self._deliver_signal(signal)

    async def ping(self) -> None:
        return None

    async def stop(self) -> None:
        self._deliver = None


class RedisBroker:
    """Redis pub/sub on one channel; every node hears every event and its hub filters.

    The publishing node also hands its events to its own hub directly, so local sockets
    never wait for the round trip; the hub ignores the copy that comes back from Redis.
    When the subscription drops, the listener reconnects with back-off and asks the hub to
    resynchronise every local topic from the log.
    """

    def __init__(self, url: str, channel: str) -> None:
        import redis.asyncio as aioredis

        self._url = url
        self._channel = channel
        self._redis = aioredis.from_url(url, socket_connect_timeout=2, socket_timeout=5,
                                        health_check_interval=10)
        # The subscription has its own client without a socket timeout: an idle channel
        # is normal, and a read timeout there would drop and resubscribe every few seconds.
        # Dead connections are found by the health-check PING sent between polls.
        self._subscriber = aioredis.from_url(
            url, socket_connect_timeout=2, health_check_interval=REDIS_HEALTH_CHECK_SECS,
            # Named, so an operator (or a test) can tell the nodes' subscriptions apart.
            client_name=f"dienhong-{os.getpid()}-events",
        )
        self._deliver: Deliver | None = None
        self._deliver_signal: DeliverSignal | None = None
        self._resync: Resync | None = None
        self._listener: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    async def start(self, deliver: Deliver, deliver_signal: DeliverSignal,
                    resync: Resync) -> None:
        self._deliver = deliver
        self._deliver_signal = deliver_signal
        self._resync = resync
        self._listener = asyncio.create_task(self._listen(), name="redis-broker-listener")
        # Start-up waits briefly for the subscription, but a missing Redis is not fatal:
        # the node still serves from the log and catches up when Redis returns.
        try:
            await asyncio.wait_for(self.connected.wait(), timeout=3)
        except TimeoutError:
            log.warning("redis not reachable at start-up; serving from the log until it is")

    async def publish(self, events: Sequence[Event]) -> None:
        if not events:
            return
        if self._deliver is not None:
            await self._deliver(events)
        # A large write (an instruction to thousands of people) goes out in several
        # messages, so other nodes start writing to their sockets while the rest of it is
        # still being encoded and carried.
        try:
            size = REDIS_EVENTS_PER_MESSAGE
            # The first message goes at once; the rest follow in one pipeline, so the
            # other nodes find each next message waiting instead of one round trip later.
            await self._redis.publish(self._channel, pack_events(events[:size]))
            if len(events) > size:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for start in range(size, len(events), size):
                        pipe.publish(self._channel, pack_events(events[start:start + size]))
                    await pipe.execute()
        except Exception as exc:
            log.warning("publish to redis failed, other nodes will recover from the log: %s", exc)

    async def publish_signal(self, signal: Signal) -> None:
        # Signals are ephemeral: a lost one is simply lost, so they go only over Redis.
        payload = json.dumps(
            {"s": {"topic": signal.topic, "type": signal.type, "data": signal.data}},
            ensure_ascii=False,
        )
        try:
            await self._redis.publish(self._channel, payload)
        except Exception as exc:
            log.info("signal not published: %s", exc)

    async def ping(self) -> None:
        await self._redis.ping()

    async def _listen(self) -> None:
        delay = REDIS_RETRY_MIN_SECS
        first = True
        while True:
            pubsub = self._subscriber.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                self.connected.set()
                delay = REDIS_RETRY_MIN_SECS
                if not first and self._resync is not None:
                    # Whatever was published while we were away comes back from the log.
                    await self._resync()
                first = False
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True,
                                                       timeout=REDIS_POLL_SECS)
                    if message is None or message.get("type") != "message":
                        continue
                    await self._handle(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected.clear()
                first = False
                log.warning("redis subscription lost (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, REDIS_RETRY_MAX_SECS)
            finally:
                try:
                    await pubsub.aclose()
                except Exception:
                    log.debug("closing a dead pubsub failed", exc_info=True)

    async def _handle(self, raw: bytes | str) -> None:
        """One message from the channel; a malformed one is logged, never fatal."""
        try:
            text = raw.decode() if isinstance(raw, bytes) else raw
            if text.startswith((SHARED_TAILS, PACKED_FRAMES)):
                if self._deliver is not None:
                    await self._deliver(unpack_events(text))
                return
            body = json.loads(text)
            if "f" in body:
                # JSON-wrapped frames, as nodes of the previous release publish them.
                events = [Event.from_packed(item) for item in body["f"]]
                if self._deliver is not None:
                    await self._deliver(events)
            elif "s" in body and self._deliver_signal is not None:
                self._deliver_signal(Signal(**body["s"]))
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            log.warning("ignoring a malformed broker message: %s", exc)

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            try:
                await self._listener
            except asyncio.CancelledError:
                pass
        await self._subscriber.aclose()
        await self._redis.aclose()


def pack_events(events: Sequence[Event]) -> str:
    """Events as one broker message: a marker and a JSON line, then each distinct tail.

    The events of one write share their frame tail (``frame_tail``: type, payload, time),
    and differ only in topic and seq. So the line lists ``[type, at]`` per distinct tail
    and ``[topic, seq, tail index]`` per event, and each tail follows once on a line of its
    own: an instruction to 3,200 inboxes carries its payload once, not 3,200 times, and
    the receiving nodes rebuild each frame by joining strings, without JSON encoding. A
    tail is compact JSON, which never holds a line break.
    """
    tails: dict[str, int] = {}
    kinds: list[list[str]] = []
    rows: list[list[Any]] = []
    for event in events:
        tail = event.tail.text if event.tail is not None else _tail_of(event)
        index = tails.get(tail)
        if index is None:
            index = tails[tail] = len(kinds)
            kinds.append([event.type, utc_iso(event.at)])
        rows.append([event.topic, event.seq, index])
    line = json.dumps({"t": kinds, "e": rows}, ensure_ascii=False, separators=(",", ":"))
    return "\n".join([SHARED_TAILS + line, *tails])


def _tail_of(event: Event) -> str:
    head = frame_head(event.topic, event.seq)
    if not event.frame.startswith(head):
        raise ValueError(f"event {event.topic}#{event.seq} has no frame tail")
    return event.frame[len(head):]


def unpack_events(text: str) -> list[Event]:
    lines = text.split("\n")
    if text.startswith(PACKED_FRAMES):
        headers = json.loads(lines[0][len(PACKED_FRAMES):])
        if not isinstance(headers, list) or len(headers) != len(lines) - 1:
            raise ValueError("a packed message has one frame per header")
        return [Event.from_packed([*header, frame])
                for header, frame in zip(headers, lines[1:], strict=True)]
    if not text.startswith(SHARED_TAILS):
        raise ValueError("not a message of packed events")
    body = json.loads(lines[0][len(SHARED_TAILS):])
    kinds, rows, tails = body["t"], body["e"], lines[1:]
    if not isinstance(kinds, list) or not isinstance(rows, list) or len(kinds) != len(tails):
        raise ValueError("a packed message has one tail per [type, at]")
    parsed: list[tuple[str, datetime, FrameTail]] = []
    for (kind, at), tail in zip(kinds, tails, strict=True):
        if not isinstance(kind, str):
            raise TypeError("an event type is a string")
        parsed.append((kind, datetime.fromisoformat(at), FrameTail(tail)))
    events = []
    for topic, seq, index in rows:
        if not isinstance(topic, str) or not isinstance(seq, int) or not isinstance(index, int):
            raise TypeError("a packed event is [topic, seq, tail index]")
        if not 0 <= index < len(tails):
            raise IndexError(f"no tail {index} in the message")
        kind, at, shared = parsed[index]
        events.append(Event(topic, seq, kind, at, tail=shared))
    return events


def create_broker(url: str, channel: str) -> Broker:
    if not url or url.startswith("memory://"):
        return MemoryBroker()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisBroker(url, channel)
    raise ValueError(f"unknown broker URL scheme: {url!r} (use memory:// or redis://)")
