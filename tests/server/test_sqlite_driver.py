"""The SQLite driver (one trip per statement): transactions still begin and end where
SQLAlchemy says, reads of a session see one snapshot, single-statement reads hold none."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

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
from sqlalchemy.exc import IntegrityError

from server.db import Database
from server.settings import Settings
from server.sqlite_driver import OneHopConnection

# A table of this test's own, outside the application's metadata.
Note = Table("driver_notes", MetaData(), Column("id", Integer, primary_key=True),
             Column("text", String(40), unique=True))

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
