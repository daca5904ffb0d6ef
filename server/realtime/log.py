"""Appending to and reading from the event log.

``append_event`` runs inside the caller's write transaction: the topic's counter row is
bumped with an upsert (``INSERT … ON CONFLICT DO UPDATE … RETURNING``), which both
allocates the next ``seq`` and holds the row lock until commit. A second writer on the same
topic waits for that commit, so seqs are gapless and become visible in order: when seq N
is visible, every seq below N is too.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Integer,
    bindparam,
    column,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.selectable import TextualSelect

from server.clock import utc_iso
from server.realtime.models import EventRecord, Topic
from server.realtime.transport import FrameTail, PreparedFrame


def frame_head(topic: str, seq: int) -> str:
    """The start of an event frame: what differs between the events of one write."""
    return '{"op":"event","topic":' + json.dumps(topic, ensure_ascii=False) + ',"seq":' + str(seq)


def frame_tail(type: str, data: dict[str, Any], at: datetime) -> str:
    """The rest of an event frame after its seq: the same for every topic one write
    emits the same event on (a directive to 3,200 inboxes encodes its payload once).

    ``frame_head(topic, seq) + frame_tail(type, data, at)`` is exactly the compact JSON of
    ``{"op": "event", "topic", "seq", "type", "data", "at"}``; it never holds a line break.
    """
    return (
        ',"type":'
        + json.dumps(type, ensure_ascii=False)
        + ',"data":'
        + json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        + ',"at":'
        + json.dumps(utc_iso(at))
        + "}"
    )


class Event:
    """A committed event: its place in the log and its wire frame.

    The frame is encoded once and shared by every socket that gets this event; events
    from another node arrive as frames (or a head and a shared tail) and are never
    encoded again. Two events are equal when topic, seq, type and time are.
    """

    __slots__ = ("_data", "_frame", "_prepared", "at", "seq", "tail", "topic", "type")

    def __init__(
        self,
        topic: str,
        seq: int,
        type: str,
        at: datetime,
        frame: str | None = None,
        tail: FrameTail | None = None,
    ) -> None:
        if frame is None and tail is None:
            raise ValueError("an event needs its frame or a frame tail")
        self.topic = topic
        self.seq = seq
        self.type = type
        self.at = at
        self._frame = frame
        # The frame after its seq (``frame_tail``), shared by the events of one write: the
        # broker carries it once for all of them. None when the frame came whole.
        self.tail = tail
        self._data: dict[str, Any] | None = None
        self._prepared: PreparedFrame | None = None

    @property
    def frame(self) -> str:
        return self._frame if self._frame is not None else self.prepared.text

    @property
    def data(self) -> dict[str, Any]:
        """The payload; decoded from the frame only if someone asks (the hub never does)."""
        if self._data is None:
            self._data = json.loads(self.frame)["data"]
        return self._data

    @property
    def prepared(self) -> PreparedFrame:
        """The frame encoded and framed once for every socket it is written to."""
        if self._prepared is None:
            if self.tail is not None:
                self._prepared = PreparedFrame(
                    head=frame_head(self.topic, self.seq), tail=self.tail
                )
            else:
                self._prepared = PreparedFrame(self._frame)
        return self._prepared

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (self.topic, self.seq, self.type, self.at) == (
            other.topic,
            other.seq,
            other.type,
            other.at,
        )

    def __hash__(self) -> int:
        return hash((self.topic, self.seq, self.type, self.at))

    def __repr__(self) -> str:
        return f"Event({self.topic!r}, {self.seq}, {self.type!r}, {self.at.isoformat()})"

    @classmethod
    def create(
        cls,
        topic: str,
        seq: int,
        type: str,
        data: dict[str, Any],
        at: datetime,
        tail: FrameTail | None = None,
    ) -> Event:
        """An event and its frame; ``tail`` is ``FrameTail(frame_tail(type, data, at))``
        when the caller already has it (the same event on many topics)."""
        if tail is None:
            tail = FrameTail(frame_tail(type, data, at))
        event = cls(topic, seq, type, at, tail=tail)
        event._data = data
        return event

    @classmethod
    def from_packed(cls, packed: list[Any]) -> Event:
        """[topic, seq, type, at, frame], as a broker carries an event between nodes."""
        topic, seq, type, at, frame = packed
        if not isinstance(topic, str) or not isinstance(type, str) or not isinstance(frame, str):
            raise TypeError("a packed event is [topic, seq, type, at, frame]")
        return cls(topic, int(seq), type, datetime.fromisoformat(at), frame)

    @classmethod
    def from_record(cls, row: EventRecord) -> Event:
        return cls.create(row.topic, row.seq, row.type, row.data, row.at)


def _upsert(dialect: str) -> Any:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


# The counter upsert of ``append_event``, built once per dialect: building it per event
# cost more than running it, and left reference cycles for the collector every time.
_NEXT_SEQ: dict[str, Any] = {}


def _next_seq_statement(dialect: str) -> Any:
    stmt = _NEXT_SEQ.get(dialect)
    if stmt is None:
        stmt = (
            _upsert(dialect)(Topic)
            .values(name=bindparam("topic"), seq=1, pruned_through=0)
            .on_conflict_do_update(index_elements=[Topic.name], set_={"seq": Topic.seq + 1})
            .returning(Topic.seq)
        )
        _NEXT_SEQ[dialect] = stmt
    return stmt


async def append_event(
    session: AsyncSession, topic: str, type: str, data: dict[str, Any], at: datetime
) -> Event:
    """Allocate the topic's next seq and store the event, inside the caller's transaction."""
    stmt = _next_seq_statement(session.get_bind().dialect.name)
    seq = int((await session.execute(stmt, {"topic": topic})).scalar_one())
    # Round-trip through JSON so the stored and published payloads are identical.
    data = json.loads(json.dumps(data, ensure_ascii=False))
    session.add(EventRecord(topic=topic, seq=seq, type=type, data=data, at=at))
    return Event.create(topic, seq, type, data, at)


_SEQS_OF = select(Topic.name, Topic.seq).where(Topic.name.in_(bindparam("names", expanding=True)))


# Runs one read statement and gives its rows: ``Database.read_rows``, which needs no
# transaction (no BEGIN and ROLLBACK around it).
ReadRows = Callable[[Executable, Mapping[str, Any]], Awaitable[Iterable[Any]]]


async def current_seqs(read: AsyncSession | ReadRows, topics: Iterable[str]) -> dict[str, int]:
    """The newest seq of each topic (0 for a topic that never had an event), read in a
    session or, one statement per 500 topics, by ``read``."""
    execute = read.execute if isinstance(read, AsyncSession) else read
    names = list(topics)
    result = dict.fromkeys(names, 0)
    for start in range(0, len(names), 500):
        rows = await execute(_SEQS_OF, {"names": names[start : start + 500]})
        for name, seq in rows:
            result[name] = int(seq)
    return result


@dataclass(frozen=True)
class TopicPosition:
    seq: int
    pruned_through: int


async def topic_position(session: AsyncSession, topic: str) -> TopicPosition:
    row = (
        await session.execute(select(Topic.seq, Topic.pruned_through).where(Topic.name == topic))
    ).one_or_none()
    if row is None:
        return TopicPosition(0, 0)
    return TopicPosition(int(row[0]), int(row[1]))


_POSITIONS_OF = select(Topic.name, Topic.seq, Topic.pruned_through).where(
    Topic.name.in_(bindparam("names", expanding=True))
)

# Topics per positions statement and catch-ups per events statement: SQLite allows 500
# parts in one compound SELECT (and a few thousand bound values in one statement).
POSITIONS_CHUNK = 500
EVENTS_CHUNK = 200


async def topic_positions(session: AsyncSession, topics: Iterable[str]) -> dict[str, TopicPosition]:
    """``topic_position`` of many topics, in one statement per 500 of them."""
    names = list(dict.fromkeys(topics))
    result = dict.fromkeys(names, TopicPosition(0, 0))
    for start in range(0, len(names), POSITIONS_CHUNK):
        rows = await session.execute(
            _POSITIONS_OF, {"names": names[start : start + POSITIONS_CHUNK]}
        )
        for name, seq, pruned_through in rows:
            result[name] = TopicPosition(int(seq), int(pruned_through))
    return result


def _events_after_statement(parts: int) -> TextualSelect:
    """``parts`` reads of ``read_events`` in one ``UNION ALL``, the ``i``-th with the
    parameters ``topic_i`` and ``after_i`` (and ``limit``, shared), tagged ``asked = i``.

    Plain SQL built once per number of parts: a statement assembled from expressions is
    compiled again on every call when its values differ (in a reconnect storm, compiling a
    union of 200 parts cost more than running it). It reads the same as ``read_events``:
    SQLite and PostgreSQL both take a sorted, limited subquery as each part.
    """
    stmt = _EVENTS_AFTER.get(parts)
    if stmt is None:
        table = EventRecord.__table__
        columns = (table.c.topic, table.c.seq, table.c.type, table.c.data, table.c.at)
        names = ", ".join(column.name for column in columns)
        sql = " UNION ALL ".join(
            f"SELECT * FROM (SELECT {index} AS asked, {names} FROM {EventRecord.__tablename__} "
            f"WHERE topic = :topic_{index} AND seq > :after_{index} "
            f"ORDER BY seq LIMIT :limit) AS part_{index}"
            for index in range(parts)
        )
        stmt = text(sql).columns(column("asked", Integer), *columns)
        _EVENTS_AFTER[parts] = stmt
    return stmt


_EVENTS_AFTER: dict[int, TextualSelect] = {}


async def read_events_of_many(
    session: AsyncSession, asked: Sequence[tuple[str, int]], limit: int
) -> dict[tuple[str, int], list[Event]]:
    """``read_events(session, topic, after_seq, limit)`` for each ``(topic, after_seq)``
    asked, in one statement per 200 of them: each gets exactly what that call would."""
    keys = list(dict.fromkeys(asked))
    result: dict[tuple[str, int], list[Event]] = {key: [] for key in keys}
    connection = await session.connection()
    for start in range(0, len(keys), EVENTS_CHUNK):
        chunk = keys[start : start + EVENTS_CHUNK]
        params: dict[str, Any] = {"limit": limit}
        for index, (topic, after_seq) in enumerate(chunk):
            params[f"topic_{index}"] = topic
            params[f"after_{index}"] = after_seq
        rows = await connection.execute(_events_after_statement(len(chunk)), params)
        for row in rows:
            result[chunk[row[0]]].append(Event.create(row[1], int(row[2]), row[3], row[4], row[5]))
    for events in result.values():
        events.sort(key=lambda event: event.seq)
    return result


async def read_events(
    session: AsyncSession, topic: str, after_seq: int, limit: int, up_to: int | None = None
) -> Sequence[Event]:
    """Events of ``topic`` with ``seq > after_seq`` (and ``<= up_to``), in order."""
    stmt = (
        select(EventRecord)
        .where(EventRecord.topic == topic, EventRecord.seq > after_seq)
        .order_by(EventRecord.seq)
        .limit(limit)
    )
    if up_to is not None:
        stmt = stmt.where(EventRecord.seq <= up_to)
    rows = (await session.execute(stmt)).scalars().all()
    return [Event.from_record(row) for row in rows]


async def rewrite_events(
    session: AsyncSession, topic: str, seqs: Sequence[int], data: dict[str, Any]
) -> None:
    """Replace the payload of some of ``topic``'s events, inside the caller's transaction.

    Seqs, types and times stay: a client's position in the log holds, and a replay from
    before them gets the new payload (text that was retracted or replaced leaves the log).
    """
    if not seqs:
        return
    data = json.loads(json.dumps(data, ensure_ascii=False))
    await session.execute(
        update(EventRecord)
        .where(EventRecord.topic == topic, EventRecord.seq.in_(list(seqs)))
        .values(data=data)
    )


async def prune_events(session: AsyncSession, older_than: datetime) -> int:
    """Delete events older than the retention window and remember where each topic was cut."""
    cuts = await session.execute(
        select(EventRecord.topic, func.max(EventRecord.seq))
        .where(EventRecord.at < older_than)
        .group_by(EventRecord.topic)
    )
    removed = 0
    for topic, seq in cuts.all():
        await session.execute(
            update(Topic)
            .where(Topic.name == topic, Topic.pruned_through < seq)
            .values(pruned_through=seq)
        )
        result = await session.execute(
            delete(EventRecord).where(EventRecord.topic == topic, EventRecord.seq <= seq)
        )
        removed += int(getattr(result, "rowcount", 0) or 0)
    return removed
