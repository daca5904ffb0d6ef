"""server.compat.aiosqlite_dbapi, the SQLite driver (one trip per statement): the
internals of SQLAlchemy's adapter and of aiosqlite it relies on are still there;
transactions still begin and end where SQLAlchemy says, reads of a session see one
snapshot, single-statement reads hold none."""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import AsyncIterator
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
    func,
    insert,
    select,
)
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
)
from sqlalchemy.exc import IntegrityError, OperationalError

from server.compat.aiosqlite_dbapi import OneHopConnection, OneHopCursor
from server.db import SENT_LATER, Database
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
