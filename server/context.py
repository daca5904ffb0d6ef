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

On PostgreSQL a write runs alone (an exclusive advisory lock, ``server.db``) unless it is
*partitioned*: ``ctx.write(partitioned=True)`` takes that lock shared, so partitioned
writes into distinct topics run side by side on every node. A partitioned write keeps to
one lock order, and the ``Write`` enforces what code can: it first reserves every topic it
will emit on (``reserve_topics``: the counters locked in one statement, in sorted order,
before any other row lock); it changes only rows of those topics' partition (their
messages, search rows, the authors' read positions) or rows it locks after them; and its
audit records are queued by ``audit`` and chained at the very end, after its events (the
audit head is the last lock it takes). ``emit`` on a topic it did not reserve raises
``UnreservedTopic``, a programming error. Two partitioned writes therefore wait for each
other only on a shared topic, in the same order, and never in a cycle of topics and head.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import TextClause, bindparam, insert, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit import AuditEntry, append_audit, append_audit_many
from server.auth.principal import PrincipalCache, principal_rows
from server.clock import Clock
from server.db import SENT_LATER, Database
from server.features import (
    AccessChange,
    ConnectionHook,
    EventView,
    FileAccessRule,
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


class UnreservedTopic(RuntimeError):
    """A partitioned write emitted on (or reserved out of order) a topic it had not
    reserved first: a programming error, never a client's."""


# ``Write.flush_log``'s statements, built once (Core: the ORM's bulk insert and update
# cost more than the statements themselves).
_INSERT_EVENTS = insert(EventRecord.__table__).execution_options(**SENT_LATER)
_SET_SEQ = (
    update(Topic.__table__)
    .where(Topic.__table__.c.name == bindparam("topic"))
    .values(seq=bindparam("new_seq"))
    .execution_options(**SENT_LATER)
)


@functools.lru_cache(maxsize=64)
def _reserve_statement(count: int) -> TextClause:
    """``Write.reserve_topics``' upsert of ``count`` topics, written out: SQLAlchemy
    compiles a dialect's ``insert().on_conflict_do_update()`` again on every execution
    (it has no cache key), which cost more than the statement."""
    rows = ", ".join(f"(:name_{index}, 0, 0)" for index in range(count))
    return text(
        f"INSERT INTO topics (name, seq, pruned_through) VALUES {rows} "
        "ON CONFLICT (name) DO UPDATE SET seq = topics.seq RETURNING name, seq"
    )


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
    # A partitioned write (module docstring): emits only on reserved topics, and its audit
    # records wait in ``_audit`` until ``flush_audit`` at the end of the block.
    partitioned: bool = False
    _audit: list[AuditEntry] = field(default_factory=list)

    async def emit(self, topic: str, type: str, data: dict[str, Any]) -> Event:
        """Store an event in this transaction; it is published after commit."""
        if self.partitioned and topic not in self._counters:
            raise UnreservedTopic(
                f"a partitioned write emitted on {topic!r} without reserving it first"
            )
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
        two round trips each.

        In a partitioned write every new topic must sort after those reserved already:
        the counters are then locked in one global order."""
        names = sorted(set(topics) - self._counters.keys())
        if self.partitioned and names and self._counters and names[0] < max(self._counters):
            raise UnreservedTopic(
                f"a partitioned write reserved {names[0]!r} after "
                f"{max(self._counters)!r}: out of the one lock order"
            )
        for start in range(0, len(names), EMIT_MANY_CHUNK):
            chunk = names[start : start + EMIT_MANY_CHUNK]
            # Updating a row to its own value locks it (PostgreSQL) and creates it if new.
            stmt = _reserve_statement(len(chunk))
            params = {f"name_{index}": name for index, name in enumerate(chunk)}
            for name, seq in (await self.session.execute(stmt, params)).all():
                self._counters[name] = self._stored_counters[name] = int(seq)

    def next_seq(self, topic: str) -> int:
        """The seq the next event of a reserved topic will take (allocates nothing): rows
        that carry their event's seq are written with it before the event is emitted."""
        return self._counters[topic] + 1

    async def flush_log(self) -> None:
        """Store the events of reserved topics emitted so far, and their counters."""
        if not self._unstored:
            return
        await self.session.execute(
            _INSERT_EVENTS,
            [
                {"topic": e.topic, "seq": e.seq, "type": e.type, "data": e.data, "at": e.at}
                for e in self._unstored
            ],
        )
        moved = {e.topic for e in self._unstored}
        # One executemany.
        await self.session.execute(
            _SET_SEQ, [{"topic": name, "new_seq": self._counters[name]} for name in sorted(moved)]
        )
        self._stored_counters.update((name, self._counters[name]) for name in moved)
        self._unstored.clear()

    def mark(self) -> tuple[int, int, int, int]:
        """Where this write stands, for ``rollback_to`` (events, callbacks, unstored,
        queued audit records)."""
        return len(self.events), len(self._after_commit), len(self._unstored), len(self._audit)

    def rollback_to(self, mark: tuple[int, int, int, int]) -> None:
        """Forget what was emitted and queued since ``mark`` (its savepoint was rolled
        back, or it wrote nothing): seqs allocated since are given out again, no gap."""
        events, callbacks, unstored, audit = mark
        del self.events[events:]
        del self._after_commit[callbacks:]
        del self._unstored[unstored:]
        del self._audit[audit:]
        self._counters.update(self._stored_counters)
        for event in self._unstored:
            self._counters[event.topic] = event.seq

    async def emit_many(
        self, topics: Sequence[str], type: str, data: dict[str, Any]
    ) -> dict[str, Event]:
        """Store the same event on many topics (e.g. one per recipient's inbox) in a few
        statements instead of one round trip per topic; returns each topic's event."""
        if self.partitioned:
            unreserved = sorted(set(topics) - self._counters.keys())
            if unreserved:
                # Before any of them is emitted: none or all.
                raise UnreservedTopic(
                    f"a partitioned write emitted on {unreserved[0]!r} without reserving it"
                )
        if self.partitioned or self._counters.keys() & set(topics):
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
        """Append a hash-chained audit record in this transaction (in a partitioned
        write: queued, and chained after the block's events by ``flush_audit``)."""
        if self.partitioned:
            # As it is now: the caller may go on changing its dict.
            snapshot = json.loads(json.dumps(details or {}, ensure_ascii=False))
            self._audit.append(AuditEntry(actor_id, action, subject, snapshot))
            return
        await append_audit(
            self.session,
            at=self.now,
            actor_id=actor_id,
            action=action,
            subject=subject,
            details=details,
        )

    async def audit_many(self, entries: Sequence[AuditEntry]) -> None:
        """Append many records with one lock of the chain head (``append_audit_many``);
        in a partitioned write they are queued like ``audit``'s."""
        if self.partitioned:
            self._audit.extend(entries)
            return
        await append_audit_many(self.session, at=self.now, entries=entries)

    async def flush_audit(self) -> None:
        """Chain the queued audit records (a partitioned write's), in one step: the audit
        head is locked last, after every topic and row of the write."""
        if self._audit:
            entries, self._audit = self._audit, []
            await append_audit_many(self.session, at=self.now, entries=entries)

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
        self.file_access_rules: list[FileAccessRule] = []
        self.file_text_handlers: list[FileTextHandler] = []
        self.access_changes: dict[str, AccessChange] = {}
        self.event_views: dict[str, EventView] = {}
        self.event_types = EventRegistry(CORE_EVENT_TYPES)
        # Per-feature state of this node (schedulers, caches, workers), one object per type.
        self.runtimes = Runtimes()

    @contextlib.asynccontextmanager
    async def write(self, *, partitioned: bool = False) -> AsyncIterator[Write]:
        """Open the one write path: transaction, events and audit, publish after commit.

        ``partitioned``: the block keeps the partitioned write's rules (module docstring)
        and so, on PostgreSQL, runs beside other partitioned writes instead of alone."""
        async with self.db.write_session(shared=partitioned) as session:
            pending = Write(
                session=session,
                now=self.clock.now(),
                contract=self.event_types,
                partitioned=partitioned,
            )
            yield pending
            await pending.flush_log()
            await pending.flush_audit()
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
