"""Brokers carry committed events from the node that wrote them to every node's hub.

Chosen by URL scheme: ``memory://`` (one process, the embedded default) or ``redis://``
(several processes or machines, Redis pub/sub). A broker is only the fast path: the event
log in the database is the truth, and each hub recovers from it whatever a broker drops.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from server.clock import utc_iso
from server.metrics import Metrics
from server.realtime.hub import Signal
from server.realtime.log import Event, frame_head
from server.realtime.transport import FrameTail

log = logging.getLogger("dienhong.broker")

Deliver = Callable[[Sequence[Event]], Awaitable[None]]
Resync = Callable[[], Awaitable[None]]
DeliverSignal = Callable[[Signal], None]

# Pause between attempts to subscribe again, doubling up to the maximum: short, so the
# node is back on the fast path as soon as Redis answers (an attempt to a Redis that does
# not answer takes the broker's deadline anyway; one that is refused costs nothing).
REDIS_RETRY_MIN_SECS = 0.1
REDIS_RETRY_MAX_SECS = 0.5
# How long one poll of the subscription waits for a message before checking its health.
REDIS_POLL_SECS = 0.5
# A subscription that heard nothing for this long sends its own PING, whose answer must
# come back within the broker's deadline (redis-py's health check only writes its PING,
# and a paused Redis accepts writes into its socket buffer without ever answering).
REDIS_LIVENESS_SECS = 1.0
REDIS_LIVENESS_MESSAGE = "dienhong-liveness"
# Queued messages sent to Redis in one round (one pipeline) at most.
REDIS_MESSAGES_PER_ROUND = 64
# Events per published message: a large write is split so other nodes can start early.
REDIS_EVENTS_PER_MESSAGE = 200
# The first characters of a message of packed events (``pack_events``): ``E2`` carries
# each distinct frame tail once; ``E1`` (nodes of the previous release) every whole frame.
SHARED_TAILS = "E2"
PACKED_FRAMES = "E1"


class Broker(Protocol):
    async def start(
        self, deliver: Deliver, deliver_signal: DeliverSignal, resync: Resync
    ) -> None: ...

    async def publish(self, events: Sequence[Event]) -> None: ...

    async def publish_signal(self, signal: Signal) -> None: ...

    async def ping(self) -> None: ...

    async def stop(self) -> None: ...


class MemoryBroker:
    """Hands events straight to this process's hub."""

    def __init__(self) -> None:
        self._deliver: Deliver | None = None
        self._deliver_signal: DeliverSignal | None = None

    async def start(self, deliver: Deliver, deliver_signal: DeliverSignal, resync: Resync) -> None:
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

    Nothing a request or a socket does waits for Redis: ``publish`` and ``publish_signal``
    put their message on a bounded outbound queue and return, and one task sends the
    queue to Redis, each round under a deadline. A Redis that stops answering without
    closing its connections (a paused process, a network path that drops packets) costs
    the queued messages, never a request's time: the log is the truth, and the other
    nodes' sweeps recover what never reached them. The subscription is watched the same
    way (its own PING must come back within the deadline); when it is lost the listener
    subscribes again as soon as Redis answers and asks the hub to resynchronise every local
    topic from the log.
    """

    def __init__(
        self,
        url: str,
        channel: str,
        *,
        queue_messages: int = 10_000,
        timeout_secs: float = 2.0,
        metrics: Metrics | None = None,
    ) -> None:
        import redis.asyncio as aioredis

        self._url = url
        self._channel = channel
        self._timeout = timeout_secs
        self._queue_limit = max(1, queue_messages)
        self._metrics = metrics
        self._redis = aioredis.from_url(
            url,
            socket_connect_timeout=timeout_secs,
            socket_timeout=timeout_secs,
            health_check_interval=10,
        )
        # The subscription has its own client without a socket timeout: an idle channel
        # is normal, and a read timeout there would drop and resubscribe every few seconds.
        # A dead or hung connection is found by the liveness PING (see ``_listen``).
        self._subscriber = aioredis.from_url(
            url,
            socket_connect_timeout=timeout_secs,
            # Named, so an operator (or a test) can tell the nodes' subscriptions apart.
            client_name=f"dienhong-{os.getpid()}-events",
        )
        self._deliver: Deliver | None = None
        self._deliver_signal: DeliverSignal | None = None
        self._resync: Resync | None = None
        self._listener: asyncio.Task[None] | None = None
        self._publisher: asyncio.Task[None] | None = None
        # (message, loop time it was queued): the second measures the broker's lag.
        self._outbound: collections.deque[tuple[str, float]] = collections.deque()
        # This node's signal messages begin with this text: JSON that nodes of the previous
        # release read as before (they ignore the node).
        self._own_signal = f'{{"n":"{uuid.uuid4().hex}","s":'
        self._queued = asyncio.Event()
        self.connected = asyncio.Event()

    async def start(self, deliver: Deliver, deliver_signal: DeliverSignal, resync: Resync) -> None:
        self._deliver = deliver
        self._deliver_signal = deliver_signal
        self._resync = resync
        self._listener = asyncio.create_task(self._listen(), name="redis-broker-listener")
        self._publisher = asyncio.create_task(
            self._publish_forever(), name="redis-broker-publisher"
        )
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
        size = REDIS_EVENTS_PER_MESSAGE
        for start in range(0, len(events), size):
            self._enqueue(pack_events(events[start : start + size]))

    async def publish_signal(self, signal: Signal) -> None:
        # Signals are ephemeral: a lost one is simply lost. This node's sockets get the
        # signal at once (typing and presence work here while Redis does not answer), the
        # others through Redis; the copy that comes back is known by its first characters
        # and skipped without parsing it.
        if self._deliver_signal is not None:
            self._deliver_signal(signal)
        body = json.dumps(
            {"topic": signal.topic, "type": signal.type, "data": signal.data}, ensure_ascii=False
        )
        self._enqueue(f"{self._own_signal}{body}}}")

    @property
    def queue_depth(self) -> int:
        return len(self._outbound)

    def _enqueue(self, message: str) -> None:
        if len(self._outbound) >= self._queue_limit:
            # Redis is not keeping up (or not answering): the oldest message goes, the
            # other nodes' sweeps recover its events from the log.
            self._outbound.popleft()
            self._dropped(1)
        self._outbound.append((message, asyncio.get_running_loop().time()))
        self._queued.set()
        if self._metrics is not None:
            self._metrics.broker_queue_depth.set(len(self._outbound))

    def _dropped(self, count: int) -> None:
        if self._metrics is not None and count:
            self._metrics.broker_dropped.inc(count)

    async def _publish_forever(self) -> None:
        while True:
            await self._queued.wait()
            self._queued.clear()
            while self._outbound:
                await self._publish_round()

    async def _publish_round(self) -> None:
        """Send what is queued (a round at most); on failure drop the queue, not wait."""
        batch = [
            self._outbound.popleft()
            for _ in range(min(len(self._outbound), REDIS_MESSAGES_PER_ROUND))
        ]
        messages = merge_signals([message for message, _queued_at in batch], self._own_signal)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._timeout):
                # The first message goes at once; the rest follow in one pipeline, so the
                # other nodes find each next message waiting instead of one round trip
                # later.
                await self._redis.publish(self._channel, messages[0])
                if len(messages) > 1:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for message in messages[1:]:
                            pipe.publish(self._channel, message)
                        await pipe.execute()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Everything still queued is as late as this round: drop it too, so the
            # next round carries fresh messages (a Redis back after a pause gets no
            # backlog the sweeps have already recovered).
            lost = len(batch) + len(self._outbound)
            self._outbound.clear()
            self._dropped(lost)
            log.warning(
                "publish to redis failed (%s), %d message(s) dropped; other nodes "
                "recover their events from the log",
                type(exc).__name__ or exc,
                lost,
            )
        else:
            if self._metrics is not None:
                now = loop.time()
                for _message, queued_at in batch:
                    self._metrics.broker_publish_lag.observe(now - queued_at)
        finally:
            if self._metrics is not None:
                self._metrics.broker_queue_depth.set(len(self._outbound))

    async def ping(self) -> None:
        await self._redis.ping()

    def _set_connected(self, up: bool) -> None:
        if up:
            self.connected.set()
        else:
            self.connected.clear()
        if self._metrics is not None:
            self._metrics.broker_connected.set(1 if up else 0)

    async def _listen(self) -> None:
        delay = REDIS_RETRY_MIN_SECS
        first = True
        loop = asyncio.get_running_loop()
        while True:
            pubsub = self._subscriber.pubsub(ignore_subscribe_messages=True)
            try:
                async with asyncio.timeout(self._timeout):
                    await pubsub.subscribe(self._channel)
                self._set_connected(True)
                delay = REDIS_RETRY_MIN_SECS
                if not first and self._resync is not None:
                    # Whatever was published while we were away comes back from the log.
                    await self._resync()
                first = False
                heard = loop.time()
                pinged: float | None = None
                while True:
                    now = loop.time()
                    if pinged is None and now - heard >= REDIS_LIVENESS_SECS:
                        async with asyncio.timeout(self._timeout):
                            await pubsub.ping(REDIS_LIVENESS_MESSAGE)
                        pinged = now
                    elif pinged is not None and now - pinged > self._timeout:
                        raise ConnectionError(f"no answer to a PING within {self._timeout:g}s")
                    async with asyncio.timeout(REDIS_POLL_SECS + self._timeout):
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=REDIS_POLL_SECS
                        )
                    if message is None:
                        continue
                    heard, pinged = loop.time(), None
                    if message.get("type") == "message":
                        await self._handle(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._set_connected(False)
                first = False
                log.warning(
                    "redis subscription lost (%s); retrying in %.1fs",
                    str(exc) or type(exc).__name__,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, REDIS_RETRY_MAX_SECS)
            finally:
                try:
                    # A hung connection must not hold the listener up as it goes.
                    async with asyncio.timeout(self._timeout):
                        await pubsub.aclose()
                except Exception:
                    log.debug("closing a dead pubsub failed", exc_info=True)

    async def _handle(self, raw: bytes | str) -> None:
        """One message from the channel; a malformed one is logged, never fatal."""
        try:
            text = raw.decode() if isinstance(raw, bytes) else raw
            if text.startswith(self._own_signal):
                return  # delivered here when it was published
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
                signals = [Signal(**body["s"]), *(Signal(**more) for more in body.get("m", ()))]
                for signal in signals:
                    self._deliver_signal(signal)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            log.warning("ignoring a malformed broker message: %s", exc)

    async def stop(self) -> None:
        for task in (self._listener, self._publisher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        # A graceful stop hands over what was still queued, within one deadline.
        if self._outbound:
            await self._publish_round()
        await self._subscriber.aclose()
        await self._redis.aclose()


def merge_signals(messages: Sequence[str], own: str) -> list[str]:
    """Each run of this node's signal messages (``own`` + signal + ``}``) as one message.

    A reconnect storm makes a presence signal per socket; one Redis message each cost
    this node more than the sockets' own frames (every node, this one too, reads each
    message back). Merged, a run reads ``{"n": node, "s": first, "m": [the others]}``:
    nodes of this release deliver every signal; nodes of the previous release deliver
    the first one only (signals are ephemeral: during a rolling upgrade some presence
    dots there catch up at the next change). Order is kept; other messages are untouched.
    """
    merged: list[str] = []
    run: list[str] = []

    def end_run() -> None:
        if len(run) > 1:
            rest = ",".join(message[len(own) : -1] for message in run[1:])
            merged.append(f'{run[0][:-1]},"m":[{rest}]}}')
        else:
            merged.extend(run)
        run.clear()

    for message in messages:
        if message.startswith(own):
            run.append(message)
        else:
            end_run()
            merged.append(message)
    end_run()
    return merged


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
    return event.frame[len(head) :]


def unpack_events(text: str) -> list[Event]:
    lines = text.split("\n")
    if text.startswith(PACKED_FRAMES):
        headers = json.loads(lines[0][len(PACKED_FRAMES) :])
        if not isinstance(headers, list) or len(headers) != len(lines) - 1:
            raise ValueError("a packed message has one frame per header")
        return [
            Event.from_packed([*header, frame])
            for header, frame in zip(headers, lines[1:], strict=True)
        ]
    if not text.startswith(SHARED_TAILS):
        raise ValueError("not a message of packed events")
    body = json.loads(lines[0][len(SHARED_TAILS) :])
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


def create_broker(
    url: str,
    channel: str,
    *,
    queue_messages: int = 10_000,
    timeout_secs: float = 2.0,
    metrics: Metrics | None = None,
) -> Broker:
    if not url or url.startswith("memory://"):
        return MemoryBroker()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisBroker(
            url, channel, queue_messages=queue_messages, timeout_secs=timeout_secs, metrics=metrics
        )
    raise ValueError(f"unknown broker URL scheme: {url!r} (use memory:// or redis://)")
