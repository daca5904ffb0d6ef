"""The application context and the one write path.

Every state change goes through ``ctx.write()``::

    async with ctx.write() as w:
        ...change rows through w.session...
        await w.emit("meeting:7", "presentation.changed", {...})
        await w.audit(actor.id, "meeting.present", "meeting:7", {...})

Inside the block one database transaction is open; ``emit`` allocates the topic's next
seq and stores the event in that transaction, ``audit`` appends a hash-chained record in
it. Only after the commit succeeds are the events handed to the broker. If the block
raises, nothing is stored and nothing is sent.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import insert, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit import append_audit
from server.auth.principal import PrincipalCache, principal_rows
from server.clock import Clock
from server.db import Database
from server.features import (
    AccessChange,
    ConnectionHook,
    EventView,
    FileAccessCheck,
    FileTextHandler,
    ReceivedHandler,
    SignalHandler,
    SocketOp,
    TopicAuthorizer,
)
from server.metrics import Metrics
from server.realtime.broker import Broker
from server.realtime.contract import CORE_EVENT_TYPES, EventRegistry
from server.realtime.hub import Hub, Signal
from server.realtime.log import Event, append_event, frame_tail
from server.realtime.models import EventRecord, Topic
from server.realtime.transport import FrameTail
from server.settings import Settings

if TYPE_CHECKING:
    from server.auth.tokens import TokenService

log = logging.getLogger("dienhong.write")


@dataclass
class Write:
    """An open write transaction with its pending events."""

    session: AsyncSession
    now: datetime
    events: list[Event] = field(default_factory=list)
    _after_commit: list[Callable[[], Any]] = field(default_factory=list)
    # Declared event types: an event of one that breaks its contract is refused.
    contract: EventRegistry | None = None

    # Counters of the topics reserved by ``reserve_topics``: their events take their seq
    # from here and are stored together by ``flush_log`` (at the latest, before commit).
    _counters: dict[str, int] = field(default_factory=dict)
    _stored_counters: dict[str, int] = field(default_factory=dict)
    _unstored: list[Event] = field(default_factory=list)

    async def emit(self, topic: str, type: str, data: dict[str, Any]) -> Event:
        """Store an event in this transaction; it is published after commit."""
        if self.contract is not None:
            self.contract.check(topic, type, data)
        if topic in self._counters:
            seq = self._counters[topic] + 1
            self._counters[topic] = seq
            # Round-trip through JSON so the stored and published payloads are identical.
            data = json.loads(json.dumps(data, ensure_ascii=False))
            event = Event.create(topic, seq, type, data, self.now)
            self._unstored.append(event)
        else:
            event = await append_event(self.session, topic, type, data, self.now)
        self.events.append(event)
        return event

    async def reserve_topics(self, topics: Sequence[str]) -> None:
        """Lock these topics' counters now, in one statement and in sorted order (so
        concurrent writers lock them in the same order), and allocate their seqs in memory
        from here on: a batch of events costs two statements at ``flush_log`` instead of
        two round trips each."""
        names = sorted(set(topics) - self._counters.keys())
        dialect = self.session.get_bind().dialect.name
        upsert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        for start in range(0, len(names), EMIT_MANY_CHUNK):
            chunk = names[start : start + EMIT_MANY_CHUNK]
            # Updating a row to its own value locks it (PostgreSQL) and creates it if new.
            stmt = (
                upsert(Topic)
                .values([{"name": name, "seq": 0, "pruned_through": 0} for name in chunk])
                .on_conflict_do_update(index_elements=[Topic.name], set_={"seq": Topic.seq})
                .returning(Topic.name, Topic.seq)
            )
            for name, seq in (await self.session.execute(stmt)).all():
                self._counters[name] = self._stored_counters[name] = int(seq)

    async def flush_log(self) -> None:
        """Store the events of reserved topics emitted so far, and their counters."""
        if not self._unstored:
            return
        await self.session.execute(
            insert(EventRecord),
            [
                {"topic": e.topic, "seq": e.seq, "type": e.type, "data": e.data, "at": e.at}
                for e in self._unstored
            ],
        )
        moved = {e.topic for e in self._unstored}
        # ORM bulk update by primary key: one executemany.
        await self.session.execute(
            update(Topic), [{"name": name, "seq": self._counters[name]} for name in sorted(moved)]
        )
        self._stored_counters.update((name, self._counters[name]) for name in moved)
        self._unstored.clear()

    def mark(self) -> tuple[int, int, int]:
        """Where this write stands, for ``rollback_to`` (events, callbacks, unstored)."""
        return len(self.events), len(self._after_commit), len(self._unstored)

    def rollback_to(self, mark: tuple[int, int, int]) -> None:
        """Forget what was emitted and queued since ``mark`` (its savepoint was rolled
        back, or it wrote nothing): seqs allocated since are given out again, no gap."""
        events, callbacks, unstored = mark
        del self.events[events:]
        del self._after_commit[callbacks:]
        del self._unstored[unstored:]
        self._counters.update(self._stored_counters)
        for event in self._unstored:
            self._counters[event.topic] = event.seq

    async def emit_many(
        self, topics: Sequence[str], type: str, data: dict[str, Any]
    ) -> dict[str, Event]:
        """Store the same event on many topics (e.g. one per recipient's inbox) in a few
        statements instead of one round trip per topic; returns each topic's event."""
        if self._counters.keys() & set(topics):
            return {topic: await self.emit(topic, type, data) for topic in sorted(set(topics))}
        if self.contract is not None:
            for topic in topics[:1]:
                self.contract.check(topic, type, data)
        events = await append_event_to_topics(self.session, topics, type, data, self.now)
        self.events.extend(events.values())
        return events

    async def audit(
        self,
        actor_id: int | None,
        action: str,
        subject: str = "",
        details: dict[str, Any] | None = None,
    ) -> None:
        """Append a hash-chained audit record in this transaction."""
        await append_audit(
            self.session,
            at=self.now,
            actor_id=actor_id,
            action=action,
            subject=subject,
            details=details,
        )

    def after_commit(self, callback: Callable[[], Any]) -> None:
        """Run ``callback`` once the transaction has committed (e.g. to wake a timer)."""
        self._after_commit.append(callback)


# Topics per multi-row statement of ``emit_many`` (3 parameters each: far under the limits).
EMIT_MANY_CHUNK = 500


async def append_event_to_topics(
    session: AsyncSession,
    topics: Sequence[str],
    type: str,
    data: dict[str, Any],
    at: datetime,
) -> dict[str, Event]:
    """``append_event`` for many topics at once: one multi-row upsert of the counters per
    chunk (sorted, so concurrent writers lock topics in the same order) and one bulk
    insert of the events. Seqs stay gapless per topic: each counter row is locked until
    commit exactly as with ``append_event``."""
    names = sorted(set(topics))
    dialect = session.get_bind().dialect.name
    upsert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # Round-trip through JSON so the stored and published payloads are identical.
    data = json.loads(json.dumps(data, ensure_ascii=False))
    seqs: dict[str, int] = {}
    for start in range(0, len(names), EMIT_MANY_CHUNK):
        chunk = names[start : start + EMIT_MANY_CHUNK]
        stmt = (
            upsert(Topic)
            .values([{"name": name, "seq": 1, "pruned_through": 0} for name in chunk])
            .on_conflict_do_update(index_elements=[Topic.name], set_={"seq": Topic.seq + 1})
            .returning(Topic.name, Topic.seq)
        )
        for name, seq in (await session.execute(stmt)).all():
            seqs[name] = int(seq)
    if names:
        await session.execute(
            insert(EventRecord),
            [
                {"topic": name, "seq": seqs[name], "type": type, "data": data, "at": at}
                for name in names
            ],
        )
    tail = FrameTail(frame_tail(type, data, at))
    return {name: Event.create(name, seqs[name], type, data, at, tail) for name in names}


RuntimeT = TypeVar("RuntimeT")


class Runtimes:
    """A feature's runtime state on this node, one object per runtime type.

    Each feature declares one runtime class and one accessor (``messaging_runtime(ctx)``,
    ``poll_runtime(ctx)``…) that asks for it by type, so callers get the type without a
    cast and no two features can collide on a name.
    """

    def __init__(self) -> None:
        self._by_type: dict[type, object] = {}

    def get(self, kind: type[RuntimeT]) -> RuntimeT | None:
        found = self._by_type.get(kind)
        assert found is None or isinstance(found, kind)
        return found

    def setdefault(self, kind: type[RuntimeT], make: Callable[[], RuntimeT]) -> RuntimeT:
        """The runtime of that type, made by ``make`` on first use."""
        found = self.get(kind)
        if found is None:
            found = make()
            self._by_type[kind] = found
        return found

    def put(self, runtime: object) -> None:
        self._by_type[type(runtime)] = runtime

    def pop(self, kind: type[RuntimeT]) -> RuntimeT | None:
        found = self._by_type.pop(kind, None)
        assert found is None or isinstance(found, kind)
        return found


class Context:
    """Everything a service needs: settings, database, broker, hub, clock, metrics."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        broker: Broker,
        clock: Clock,
        metrics: Metrics,
        tokens: TokenService,
    ) -> None:
        self.settings = settings
        self.db = db
        self.broker = broker
        self.clock = clock
        self.metrics = metrics
        self.tokens = tokens
        self.hub = Hub(db, metrics, resume_batch=settings.resume_batch)
        self.principals = PrincipalCache(
            clock, settings.principal_cache_secs, settings.principal_cache_size
        )
        self.principal_rows = principal_rows(db)
        self.topic_authorizers: dict[str, TopicAuthorizer] = {}
        self.received_handlers: list[ReceivedHandler] = []
        self.signal_handlers: dict[str, SignalHandler] = {}
        self.socket_ops: dict[str, SocketOp] = {}
        self.connection_hooks: list[ConnectionHook] = []
        self.file_access_checks: list[FileAccessCheck] = []
        self.file_text_handlers: list[FileTextHandler] = []
        self.access_changes: dict[str, AccessChange] = {}
        self.event_views: dict[str, EventView] = {}
        self.event_types = EventRegistry(CORE_EVENT_TYPES)
        # Per-feature state of this node (schedulers, caches, workers), one object per type.
        self.runtimes = Runtimes()

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[Write]:
        """Open the one write path: transaction, events and audit, publish after commit."""
        async with self.db.write_session() as session:
            pending = Write(session=session, now=self.clock.now(), contract=self.event_types)
            yield pending
            await pending.flush_log()
        # Committed. From here on failures must not undo what the client was told.
        if pending.events:
            self.metrics.events_published.inc(len(pending.events))
            try:
                await self.broker.publish(pending.events)
            except Exception:
                log.exception("publishing committed events failed; hubs recover from the log")
        for callback in pending._after_commit:
            try:
                callback()
            except Exception:
                log.exception("after-commit callback failed")

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self.db.read_session() as session:
            yield session

    async def signal(self, topic: str, type: str, data: dict[str, Any]) -> None:
        """Send an ephemeral message to a topic's live subscribers on every node."""
        await self.broker.publish_signal(Signal(topic, type, data))
