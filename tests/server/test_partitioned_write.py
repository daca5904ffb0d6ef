"""A partitioned write (``ctx.write(partitioned=True)``): it emits only on the topics it
reserved first, its audit records are chained after its events, and on PostgreSQL it takes
the write lock shared, so two of them run at once while an exclusive write waits for both."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event, func, select, text

from server.audit import AuditEntry, AuditRecord, verify_chain
from server.context import UnreservedTopic
from server.db import PG_WRITE_LOCK_KEY, retryable_sqlstate
from server.realtime.models import EventRecord
from tests.conftest import MakeServer
from tests.harness import eventually


async def _events(server: Any, topic: str) -> list[int]:
    async with server.ctx.read() as session:
        return list(
            (
                await session.execute(
                    select(EventRecord.seq).where(EventRecord.topic == topic).order_by("seq")
                )
            ).scalars()
        )


async def test_a_partitioned_write_refuses_a_topic_it_did_not_reserve(
    make_server: MakeServer,
) -> None:
    server = await make_server(features=[])
    ctx = server.ctx
    async with ctx.write(partitioned=True) as w:
        await w.reserve_topics(["note:2", "note:1"])
        await w.emit("note:1", "note.written", {"n": 1})
        with pytest.raises(UnreservedTopic):
            await w.emit("note:3", "note.written", {"n": 3})
        with pytest.raises(UnreservedTopic):
            await w.emit_many(["note:2", "note:3"], "note.written", {"n": 23})
        # A topic sorting before those locked already would break the one lock order.
        with pytest.raises(UnreservedTopic):
            await w.reserve_topics(["note:0"])
        # After them it keeps the order.
        await w.reserve_topics(["note:4"])
        await w.emit_many(["note:2", "note:4"], "note.written", {"n": 24})
    assert await _events(server, "note:1") == [1]
    assert await _events(server, "note:2") == [1]
    assert await _events(server, "note:3") == []
    assert await _events(server, "note:4") == [1]
    # An exclusive write emits wherever it likes, as before.
    async with ctx.write() as w:
        await w.emit("note:3", "note.written", {"n": 3})
    assert await _events(server, "note:3") == [1]


async def test_a_partitioned_write_chains_its_audit_records_after_its_events(
    make_server: MakeServer,
) -> None:
    server = await make_server(features=[])
    ctx = server.ctx
    executed: list[tuple[Any, str]] = []

    def seen(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        executed.append((conn, statement.lower()))

    def statements() -> list[str]:
        """What the write's own connection ran (not the server's background tasks)."""
        return [statement for conn, statement in executed if conn is own]

    own: Any = None

    event.listen(ctx.db.write_engine.sync_engine, "before_cursor_execute", seen)
    try:
        async with ctx.write(partitioned=True) as w:
            await w.reserve_topics(["note:1", "note:2"])
            own = (await w.session.connection()).sync_connection
            # Asked for first, chained last: nothing of the chain is touched in the block.
            await w.audit(None, "note.first", "note:1", {"n": 1})
            await w.emit("note:1", "note.written", {"n": 1})
            await w.audit_many([AuditEntry(None, "note.second", "note:2")])
            await w.emit("note:2", "note.written", {"n": 2})
            assert not [s for s in statements() if "audit" in s]
            count = select(func.count()).select_from(AuditRecord)
            assert (await w.session.execute(count)).scalar_one() == 0
    finally:
        event.remove(ctx.db.write_engine.sync_engine, "before_cursor_execute", seen)
    ran = statements()
    events_at = max(i for i, s in enumerate(ran) if s.startswith("insert into events"))
    head_at = min(i for i, s in enumerate(ran) if "audit_head" in s)
    assert events_at < head_at, ran
    # Nothing but the chain after the head: it is the last lock the write takes.
    assert all("audit" in s for s in ran[head_at:]), ran[head_at:]
    async with ctx.read() as session:
        report = await verify_chain(session)
        actions = (
            (await session.execute(select(AuditRecord.action).order_by(AuditRecord.seq)))
            .scalars()
            .all()
        )
    assert report.ok, report
    assert actions == ["note.first", "note.second"]
    assert await _events(server, "note:1") == [1]
    assert await _events(server, "note:2") == [1]


async def test_a_failed_partitioned_write_chains_nothing(make_server: MakeServer) -> None:
    server = await make_server(features=[])
    ctx = server.ctx

    class Boom(RuntimeError):
        pass

    with pytest.raises(Boom):
        async with ctx.write(partitioned=True) as w:
            await w.reserve_topics(["note:1"])
            await w.emit("note:1", "note.written", {"n": 1})
            await w.audit(None, "note.lost", "note:1")
            raise Boom
    async with ctx.read() as session:
        assert (await verify_chain(session)).records == 0
    assert await _events(server, "note:1") == []


async def _write_lock_modes(server: Any) -> list[tuple[str, bool]]:
    """(mode, granted) of every backend's hold of (or wait for) the write lock."""
    async with server.ctx.read() as session:
        rows = await session.execute(
            text(
                "SELECT mode, granted FROM pg_locks WHERE locktype = 'advisory' "
                "AND classid = :hi AND objid = :lo AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
            ),
            {"hi": (PG_WRITE_LOCK_KEY >> 32) & 0xFFFFFFFF, "lo": PG_WRITE_LOCK_KEY & 0xFFFFFFFF},
        )
        return sorted((str(mode), bool(granted)) for mode, granted in rows.all())


async def test_partitioned_writes_run_side_by_side_and_an_exclusive_one_waits(
    make_server: MakeServer, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite has one writer per process; the shared lock is PostgreSQL's")
    server = await make_server(features=[])
    ctx = server.ctx
    inside: list[str] = []

    async def partitioned(topic: str, release: asyncio.Event) -> None:
        async with ctx.write(partitioned=True) as w:
            await w.reserve_topics([topic])
            await w.emit(topic, "note.written", {"topic": topic})
            inside.append(topic)
            await release.wait()

    async def exclusive(topic: str) -> None:
        async with ctx.write() as w:
            inside.append("exclusive")
            await w.emit(topic, "note.written", {"topic": "exclusive"})

    for attempt in range(3):
        inside.clear()
        release = asyncio.Event()
        one, two = f"note:{attempt}a", f"note:{attempt}b"
        first = asyncio.create_task(partitioned(one, release))
        await eventually(lambda: len(inside) == 1, what="the first partitioned write inside")
        second = asyncio.create_task(partitioned(two, release))
        try:
            # Both inside their transactions at once: with one exclusive lock, the second
            # would wait for the first to commit.
            await eventually(
                lambda: len(inside) == 2, what="both partitioned writes inside", timeout=5
            )
        except AssertionError:
            # An exclusive write of the server's own (its pruning of the log at start-up)
            # asked for the lock between the two, and PostgreSQL queues the second shared
            # request behind that waiting one. Let them all finish, and again.
            release.set()
            await asyncio.gather(first, second)
            continue
        alone: asyncio.Task[None] | None = None
        try:
            modes = await _write_lock_modes(server)
            assert [mode for mode in modes if mode[1]] == [
                ("ShareLock", True),
                ("ShareLock", True),
            ], modes
            alone = asyncio.create_task(exclusive(one))
            await eventually(
                lambda: _exclusive_waits(server), what="the exclusive write waiting for the lock"
            )
            assert "exclusive" not in inside
        finally:
            release.set()
            await asyncio.gather(first, second)
            if alone is not None:
                await alone
        assert inside[-1] == "exclusive"
        assert await _events(server, one) == [1, 2]
        assert await _events(server, two) == [1]
        break
    else:
        pytest.fail("an exclusive write came between the two partitioned ones three times")


async def _exclusive_waits(server: Any) -> bool:
    return ("ExclusiveLock", False) in await _write_lock_modes(server)


def test_deadlocks_and_serialization_failures_are_told_apart() -> None:
    class DriverError(Exception):
        def __init__(self, sqlstate: str) -> None:
            super().__init__(sqlstate)
            self.sqlstate = sqlstate

    class Wrapped(Exception):
        def __init__(self, orig: BaseException) -> None:
            super().__init__(str(orig))
            self.orig = orig

    assert retryable_sqlstate(Wrapped(DriverError("40P01"))) == "40P01"
    assert retryable_sqlstate(Wrapped(DriverError("40001"))) == "40001"
    assert retryable_sqlstate(Wrapped(DriverError("23505"))) is None
    assert retryable_sqlstate(RuntimeError("no state")) is None
