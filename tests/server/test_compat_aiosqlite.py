"""server.compat.aiosqlite_dbapi, the SQLite driver (one trip per statement): the
internals of SQLAlchemy's adapter and of aiosqlite it relies on are still there;
transactions still begin and end where SQLAlchemy says, reads of a session see one
snapshot, single-statement reads hold none. A read's statement runs on the event loop's
thread within its budget, and otherwise on the connection's thread as before."""

from __future__ import annotations

import sqlite3
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    event,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
)
from sqlalchemy.exc import IntegrityError, OperationalError

from server.compat import aiosqlite_dbapi
from server.compat.aiosqlite_dbapi import OneHopConnection, OneHopCursor
from server.db import SENT_LATER, Database
from server.loop import READ
from server.settings import Settings

# A table of this test's own, outside the application's metadata.
Note = Table(
    "driver_notes",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("text", String(40), unique=True),
)

COUNT = select(func.count()).select_from(Note)
BY_TEXT = select(Note.c.id, Note.c.text).where(Note.c.text == bindparam("text"))


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    # One reader connection: every read below reuses it, so a snapshot it kept by
    # mistake would show.
    database = Database(Settings(data_dir=tmp_path, db_pool_size=1))
    async with database.write_engine.begin() as conn:
        await conn.run_sync(Note.create)
    yield database
    await database.dispose()


async def add(db: Database, text: str) -> None:
    async with db.write_session() as session:
        await session.execute(insert(Note).values(text=text))


async def test_a_read_session_sees_one_snapshot_and_the_next_one_sees_new_rows(
    db: Database,
) -> None:
    await add(db, "first")
    async with db.read_session() as session:
        assert (await session.execute(COUNT)).scalar_one() == 1
        await add(db, "second")
        # Same transaction, same snapshot: the row committed meanwhile is not there.
        assert (await session.execute(COUNT)).scalar_one() == 1
    async with db.read_session() as session:
        assert (await session.execute(COUNT)).scalar_one() == 2


async def test_single_statement_reads_hold_no_snapshot(db: Database) -> None:
    await add(db, "first")
    assert (await db.read_row(COUNT)) == (1,)
    await add(db, "second")
    assert (await db.read_row(COUNT)) == (2,)
    rows = await db.read_rows(BY_TEXT, {"text": "second"})
    assert [row.text for row in rows] == ["second"]
    async with db.read_engine.connect() as conn:
        raw = (await conn.get_raw_connection()).dbapi_connection
        assert isinstance(raw, OneHopConnection)


async def test_a_failed_write_leaves_nothing_and_the_writer_usable(db: Database) -> None:
    await add(db, "first")
    with pytest.raises(IntegrityError):
        async with db.write_session() as session:
            await session.execute(insert(Note).values(text="second"))
            await session.execute(insert(Note).values(text="first"))
    assert (await db.read_row(COUNT)) == (1,)
    await add(db, "third")
    rows = await db.read_rows(select(Note.c.text).order_by(Note.c.text))
    assert [row.text for row in rows] == ["first", "third"]


async def test_many_rows_and_executemany_go_through(db: Database) -> None:
    async with db.write_session() as session:
        await session.execute(insert(Note), [{"text": f"n{i:03d}"} for i in range(300)])
    rows = await db.read_rows(select(Note.c.text).order_by(Note.c.text))
    assert len(rows) == 300 and rows[0].text == "n000" and rows[-1].text == "n299"


async def test_the_adapter_internals_the_driver_uses_are_still_there(db: Database) -> None:
    # The cursor's slots the one-trip cursor fills in itself.
    for name in (
        "_adapt_connection",
        "_connection",
        "await_",
        "_rows",
        "description",
        "lastrowid",
        "rowcount",
    ):
        assert name in AsyncAdapt_aiosqlite_cursor.__slots__, f"SQLAlchemy lost {name!r}"
    assert callable(AsyncAdapt_aiosqlite_connection._handle_exception)
    # Where a connection finds its DB-API module (the budget of reads on the loop).
    assert "dbapi" in AsyncAdapt_aiosqlite_connection.__slots__
    # How SQLite says a statement was interrupted by the progress handler.
    assert sqlite3.SQLITE_INTERRUPT == 9
    assert callable(aiosqlite.Connection._execute)
    async with db.write_engine.connect() as conn:
        raw = (await conn.get_raw_connection()).dbapi_connection
        assert isinstance(raw, OneHopConnection)
        # aiosqlite's connection, and the sqlite3 connection it runs in its thread.
        assert isinstance(raw._connection, aiosqlite.Connection)
        assert isinstance(raw._connection._conn, sqlite3.Connection)
        cursor = raw.cursor()
        assert isinstance(cursor, OneHopCursor)
        assert cursor._adapt_connection is raw and cursor._connection is raw._connection
        assert isinstance(cursor._rows, deque)


class Trips:
    """Counts the calls queued to aiosqlite's thread (each one a trip)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = aiosqlite.Connection._execute

        async def counted(conn: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await original(conn, fn, *args, **kwargs)

        monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)


LATER = insert(Note).execution_options(**SENT_LATER)


async def test_begin_and_writes_sent_later_share_trips(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add(db, "warm")  # the write connection is open
    trips = Trips(monkeypatch)
    async with db.write_session() as session:
        await session.execute(LATER, [{"text": "a"}, {"text": "b"}])
        await session.execute(LATER, {"text": "c"})
        # A read in the same transaction sees them: they went first, in the same trip.
        rows = (await session.execute(select(Note.c.text).order_by(Note.c.id))).all()
        assert [row.text for row in rows] == ["warm", "a", "b", "c"]
        await session.execute(LATER, {"text": "d"})
    # BEGIN + the three writes + the read: one trip; the last write + COMMIT: one.
    assert trips.count == 2
    async with db.write_session():
        pass  # opened, ran nothing: no BEGIN and no COMMIT sent
    assert trips.count == 2
    assert (await db.read_row(COUNT)) == (5,)


async def test_a_failed_write_sent_later_stores_nothing_even_when_caught(db: Database) -> None:
    await add(db, "first")
    with pytest.raises(OperationalError, match="not committed"):
        async with db.write_session() as session:
            await session.execute(LATER, {"text": "second"})
            await session.execute(LATER, {"text": "first"})  # breaks the unique key
            # Its error comes with the next trip; caught there, the transaction still
            # cannot commit.
            with pytest.raises(IntegrityError):
                await session.execute(COUNT)
            await session.execute(insert(Note).values(text="third"))
    rows = await db.read_rows(select(Note.c.text).order_by(Note.c.text))
    assert [row.text for row in rows] == ["first"]
    await add(db, "fourth")
    assert (await db.read_row(COUNT)) == (2,)


async def test_a_failed_write_sent_with_the_commit_fails_the_commit(db: Database) -> None:
    await add(db, "first")
    with pytest.raises(IntegrityError):
        async with db.write_session() as session:
            await session.execute(insert(Note).values(text="second"))
            await session.execute(LATER, {"text": "first"})
    assert (await db.read_row(COUNT)) == (1,)
    await add(db, "second")
    assert (await db.read_row(COUNT)) == (2,)


# --- a read's statement on the event loop's thread ---------------------------------------
# The thread a statement runs in, as SQLite sees it.
THREAD = select(func.thread_ident())
# Counts to ``n`` (a statement that takes as long as it is asked to), then the thread.
LONG = text(
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < :n) "
    "SELECT count(*), thread_ident(), (SELECT count(*) FROM driver_notes) FROM c"
)
LONG_ROWS = 3_000_000


async def tell_threads(database: Database) -> None:
    """SQL's ``thread_ident()`` on every connection of ``database``, each opened now (so
    that what opening a connection runs is not counted afterwards)."""

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.await_(
            dbapi_connection._connection.create_function("thread_ident", 0, threading.get_ident)
        )

    for engine in (database.read_engine, database.write_engine):
        await engine.dispose()
        event.listen(engine.sync_engine, "connect", on_connect)
    await database.read_row(THREAD)


@pytest.fixture
def as_read() -> Iterator[None]:
    """The test's task is a read's (as a GET's task is)."""
    token = READ.set(True)
    yield
    READ.reset(token)


class OnLoop:
    """What ``_run_on_loop`` answered: a result, or None (interrupted)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.answers: list[bool] = []
        original = aiosqlite_dbapi._run_on_loop

        async def watched(*args: Any) -> Any:
            answer = await original(*args)
            self.answers.append(answer is not None)
            return answer

        monkeypatch.setattr(aiosqlite_dbapi, "_run_on_loop", watched)


async def test_a_reads_statement_runs_on_the_loops_thread_and_nothing_else_does(
    db: Database, tmp_path: Path
) -> None:
    await tell_threads(db)
    here = threading.get_ident()
    # Not a read's task: the connection's thread.
    assert (await db.read_row(THREAD)) != (here,)
    token = READ.set(True)
    try:
        assert (await db.read_row(THREAD)) == (here,)
        async with db.read_session() as session:
            assert (await session.execute(THREAD)).one() == (here,)
        # A write, even from a read's task: its own connection, in its own thread.
        async with db.write_session() as session:
            assert (await session.execute(THREAD)).one() != (here,)
        # Turned off: every statement makes its trip.
        off = Database(Settings(data_dir=tmp_path / "off", sqlite_read_on_loop_ms=0))
        await tell_threads(off)
        try:
            assert (await off.read_row(THREAD)) != (here,)
        finally:
            await off.dispose()
    finally:
        READ.reset(token)


@pytest.fixture
async def on_loop(db: Database, monkeypatch: pytest.MonkeyPatch) -> OnLoop:
    """``db`` with one note, its connections telling their thread, ``_run_on_loop`` watched."""
    await tell_threads(db)
    await add(db, "first")
    return OnLoop(monkeypatch)


@pytest.mark.usefixtures("as_read")
async def test_a_read_that_outlasts_its_budget_runs_again_on_the_connections_thread(
    db: Database, on_loop: OnLoop
) -> None:
    count, thread, notes = (await db.read_row(LONG, {"n": LONG_ROWS})) or ()
    # Interrupted on the loop's thread, then answered whole by the connection's.
    assert (count, notes) == (LONG_ROWS, 1)
    assert thread != threading.get_ident()
    assert on_loop.answers == [False]
    # Known to be long now: it goes to the thread at once; short ones still run here.
    assert (await db.read_row(LONG, {"n": 10})) == (10, thread, 1)
    assert (await db.read_row(THREAD)) == (threading.get_ident(),)
    assert on_loop.answers == [False, True]


@pytest.mark.usefixtures("as_read")
async def test_a_read_interrupted_in_its_transaction_goes_on_in_its_snapshot(
    db: Database, on_loop: OnLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Interrupted with the BEGIN sent with it: the thread begins again, no error.
    async with db.read_session() as session:
        assert (await session.execute(LONG, {"n": LONG_ROWS})).one()[2] == 1
        await add(db, "second")
        # The snapshot taken on the thread holds for the rest of the transaction.
        assert (await session.execute(COUNT)).scalar_one() == 1
    assert on_loop.answers == [False, True]
    # Interrupted after the transaction began here: the thread goes on in the same one.
    monkeypatch.setattr(db.read_engine.dialect.dbapi, "long_statements", set())
    async with db.read_session() as session:
        assert (await session.execute(COUNT)).scalar_one() == 2
        await add(db, "third")
        assert (await session.execute(LONG, {"n": LONG_ROWS})).one()[2] == 2
        assert (await session.execute(COUNT)).scalar_one() == 2
    assert on_loop.answers[2:] == [True, False, True]
    assert (await db.read_row(COUNT)) == (3,)


@pytest.mark.usefixtures("as_read")
async def test_a_read_that_fails_on_the_loops_thread_fails_as_before(db: Database) -> None:
    with pytest.raises(OperationalError, match="no such table"):
        await db.read_row(text("SELECT * FROM no_such_table"))
    async with db.read_session() as session:
        with pytest.raises(OperationalError, match="no such table"):
            await session.execute(text("SELECT * FROM no_such_table"))
    await add(db, "first")
    assert (await db.read_row(COUNT)) == (1,)
