"""Async engine and sessions: SQLite (embedded default) or PostgreSQL.

SQLite runs in WAL mode with foreign keys on and a busy timeout. Writers open their
transaction with ``BEGIN IMMEDIATE`` so two writers never both read and then fail to
upgrade their lock; inside one process an ``asyncio.Lock`` queues writers so no thread sits
in SQLite's busy loop. On PostgreSQL every write transaction first takes one advisory
lock, a reader-writer lock (see PG_WRITE_LOCK_KEY): shared for a *partitioned* write (one
that locks the topic counters it emits on first, in sorted order, and the audit head last;
see ``server.context``), exclusive for every other write. Partitioned writes into distinct
topics so run side by side on every node; any other write runs alone, as on SQLite.
Readers use a second engine: on SQLite with plain deferred transactions, never waiting for
the writer (WAL); on PostgreSQL with a pool of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Executable, MetaData, Row, event, text
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from server.compat.aiosqlite_dbapi import AT_COMMIT, mark_at_commit, one_hop_dbapi
from server.loop import opened_as
from server.private_paths import private_dir, private_sqlite
from server.settings import Settings

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# Writers on PostgreSQL take this transaction-scoped advisory lock first, on every node.
# Most write transactions lock topic rows (seq allocation) and the audit head in whatever
# order their service emits and audits, and check-then-act on rows under READ COMMITTED
# (open a poll only if none is open...): they take it exclusively, one at a time, as on
# SQLite. A partitioned write (``ctx.write(partitioned=True)``) takes it shared: it locks
# every topic counter it emits on up front in sorted order, changes only rows of those
# topics' partition (or rows locked after them), and locks the audit head last, so any
# number of them run side by side without a lock cycle, and none runs beside an
# exclusive write, whose invariants therefore hold unchanged.
PG_WRITE_LOCK_KEY = 0x4469656E486F6E67  # "DienHong"
_PG_WRITE_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
_PG_WRITE_LOCK_SHARED = text("SELECT pg_advisory_xact_lock_shared(:key)")

# SQLSTATEs of a transaction that lost a lock race and may simply run again: a deadlock
# (the server cancels one of the transactions in the cycle) and a serialization failure.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


def retryable_sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of ``error`` (or of the driver error it wraps) when it is a deadlock or
    a serialization failure, which a write survives by running again; None otherwise."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        state = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if state in RETRYABLE_SQLSTATES:
            return str(state)
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return None


# Execution option of SQLite connections that run each statement in its own implicit
# transaction (no BEGIN, nothing to roll back): for reads of a single statement, which see
# one consistent snapshot by themselves.
NO_BEGIN = "dienhong_no_begin"

# Execution options of a write whose result nobody reads: on SQLite it travels to the
# connection's thread with the next statement or the COMMIT (server.compat.aiosqlite_dbapi).
SENT_LATER = {AT_COMMIT: True}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both databases (SQLite has no time zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _sqlite_pragmas(settings: Settings, *, immediate: bool) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(settings.sqlite_busy_timeout_ms)}")
        # WAL is remembered in the file. Asking to switch needs an exclusive lock, which a
        # new connection opened while another one writes would not get ("database is
        # locked", not retried by the busy handler), so switch only the first time.
        cursor.execute("PRAGMA journal_mode")
        if str(cursor.fetchone()[0]).lower() != "wal":
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Deleted rows are overwritten with zeros, not left in free space: what a secret
        # poll's close removes (its sealed ballots) must not stay readable in the file.
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    def on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(NO_BEGIN):
            return
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return on_connect, on_begin


def _read_connection(*args: Any, **kwargs: Any) -> Awaitable[Any]:
    """asyncpg's ``connect`` for the read pool: what arrives on the connection is a read's
    and goes ahead of writes (``server.loop``), whoever asked for it first."""
    import asyncpg

    return opened_as(asyncpg.connect(*args, **kwargs), read=True)


def _write_connection(*args: Any, **kwargs: Any) -> Awaitable[Any]:
    """asyncpg's ``connect`` for the write pool: never a read's, even when a read (a
    refusal's audit record) asked for it first."""
    import asyncpg

    return opened_as(asyncpg.connect(*args, **kwargs), read=False)


class Database:
    """Two engines over one database: one for writes, one for reads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.effective_database_url
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            private_dir(settings.data_dir)
            database = make_url(self.url).database
            if database and database != ":memory:":
                private_sqlite(Path(database))
            self.write_engine = self._sqlite_engine(immediate=True)
            self.read_engine = self._sqlite_engine(immediate=False)
        else:
            self.write_engine = create_async_engine(
                self.url,
                pool_size=settings.db_pool_size,
                max_overflow=settings.db_pool_size,
                pool_pre_ping=True,
                connect_args={"async_creator_fn": _write_connection},
            )
            # Reads have their own pool: under a storm of writes, every write connection
            # may be waiting for the write lock, and a read must not wait behind them.
            # Opened as reads, so that their answers go ahead of writes (server.loop).
            self.read_engine = create_async_engine(
                self.url,
                pool_size=settings.db_read_pool_size,
                max_overflow=settings.db_read_pool_size,
                pool_pre_ping=True,
                connect_args={"async_creator_fn": _read_connection},
            )
        # Single statements need no transaction of their own: no BEGIN and no ROLLBACK
        # on SQLite (two trips to the connection's thread), none on PostgreSQL (two round
        # trips to the server).
        self._single_reads = self.read_engine.execution_options(
            **({NO_BEGIN: True} if self.is_sqlite else {"isolation_level": "AUTOCOMMIT"})
        )
        self._writes = async_sessionmaker(self.write_engine, expire_on_commit=False)
        self._reads = async_sessionmaker(self.read_engine, expire_on_commit=False)
        # One SQLite writer at a time per process; PostgreSQL takes an advisory lock
        # (shared or exclusive, see PG_WRITE_LOCK_KEY).
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if self.is_sqlite else None

    def _sqlite_engine(self, *, immediate: bool) -> AsyncEngine:
        # Writers take turns (one at a time), so one connection serves them all. Readers
        # share a fixed pool and wait for a free connection rather than opening and
        # closing overflow connections (each one a thread) under load.
        # A read's statement may run on the event loop's thread (server.compat.aiosqlite_dbapi).
        loop_budget = 0.0 if immediate else max(0.0, self.settings.sqlite_read_on_loop_ms) / 1000
        engine = create_async_engine(
            self.url,
            connect_args={"timeout": self.settings.sqlite_busy_timeout_ms / 1000},
            pool_size=1 if immediate else self.settings.db_pool_size,
            max_overflow=0,
            module=one_hop_dbapi(loop_budget=loop_budget),
        )
        on_connect, on_begin = _sqlite_pragmas(self.settings, immediate=immediate)
        event.listen(engine.sync_engine, "connect", on_connect)
        event.listen(engine.sync_engine, "begin", on_begin)
        event.listen(engine.sync_engine, "before_cursor_execute", mark_at_commit)
        return engine

    @contextlib.asynccontextmanager
    async def write_session(self, *, shared: bool = False) -> AsyncIterator[AsyncSession]:
        """A session inside one write transaction; commits on success.

        ``shared``: on PostgreSQL, take the write lock shared (a partitioned write, see
        PG_WRITE_LOCK_KEY) instead of exclusively. SQLite has one writer per process
        either way."""
        lock = self._write_lock
        if lock is not None:
            await lock.acquire()
        try:
            async with self._writes() as session, session.begin():
                if lock is None:
                    statement = _PG_WRITE_LOCK_SHARED if shared else _PG_WRITE_LOCK
                    await session.execute(statement, {"key": PG_WRITE_LOCK_KEY})
                yield session
        finally:
            if lock is not None:
                lock.release()

    @contextlib.asynccontextmanager
    async def read_session(self) -> AsyncIterator[AsyncSession]:
        async with self._reads() as session:
            yield session

    async def read_row(
        self, statement: Executable, params: Mapping[str, Any] | None = None
    ) -> Row[Any] | None:
        """The first row of one read statement (Core: no session, no ORM objects).

        A statement built once at import with ``bindparam`` and given ``params`` here
        skips building the SQL expression and its cache key on every call."""
        async with self._single_reads.connect() as conn:
            return (await conn.execute(statement, params)).first()

    async def read_rows(
        self, statement: Executable, params: Mapping[str, Any] | None = None
    ) -> Sequence[Row[Any]]:
        """Every row of one read statement; see ``read_row``."""
        async with self._single_reads.connect() as conn:
            return (await conn.execute(statement, params)).all()

    async def checkpoint_wal(self) -> bool:
        """SQLite: copy the write-ahead log into the database and truncate it to zero
        bytes, between two writes. False when a reader on an old snapshot kept it from
        finishing (try again later); True on PostgreSQL, which has no such file."""
        if self._write_lock is None:
            return True
        async with self._write_lock:
            engine = self.write_engine.execution_options(**{NO_BEGIN: True})
            async with engine.connect() as conn:
                busy, _frames, _copied = (
                    await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                ).one()
        return int(busy) == 0

    async def ping(self) -> None:
        async with self._single_reads.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def dispose(self) -> None:
        await self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            await self.read_engine.dispose()
