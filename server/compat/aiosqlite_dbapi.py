"""SQLAlchemy's aiosqlite adapter with one trip to the connection's thread per statement.

aiosqlite runs every call on the connection in that connection's own thread, and each
call is a round trip: queue the call, wake the thread, wake the event loop with the
result. The stock adapter makes four of them per statement (create a cursor, execute,
fetch the rows, close the cursor), and one more to roll back a connection that holds no
transaction. Under load each trip costs the event loop tens of microseconds of system
calls and waits for the thread to get the GIL. Here a statement is one trip (the four steps
run together in the thread), and a rollback with no transaction open is skipped: SQLite
would do nothing for it either. A ``BEGIN`` (or ``BEGIN IMMEDIATE``) makes no trip of its
own: it is sent with the transaction's first statement, in the same trip, before it; a
transaction that ran no statement then needs neither its ``BEGIN`` nor its ``COMMIT``.

A statement whose result nobody reads (the last bulk writes of a batch) can ask, with the
execution option ``AT_COMMIT``, to travel with the next trip, at the latest the ``COMMIT``'s:
it still runs in its place in the transaction's order. Should it fail, its error is raised
by that later trip, and the transaction can then no longer commit (its ``COMMIT`` raises),
whoever caught the error: nothing of it is stored.

A read's statement (``server.loop.READ`` set, on the read engine) makes no trip at all: it
runs on the event loop's own thread, for at most the budget the engine gives
(``Settings.sqlite_read_on_loop_ms``). Under a storm of writes the trips are what a read
waits for: the connection's thread waits for the GIL, then the loop for the thread's
answer. A statement still running when the budget is spent is interrupted by SQLite
(nothing of it holds: a ``BEGIN`` sent with it is rolled back) and runs again on the
connection's thread, in the same transaction; its SQL then always goes to the thread.

Given to ``create_async_engine(..., module=one_hop_dbapi())``: the dialect is the stock
one, only the DB-API module it wraps is this one.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)

from server.loop import READ

# Statements that open a transaction, sent with the next statement's trip (see above).
_BEGINS = frozenset({"BEGIN", "BEGIN IMMEDIATE", "BEGIN DEFERRED", "BEGIN EXCLUSIVE"})

# Execution option of a statement that may travel with the next trip (see above).
AT_COMMIT = "dienhong_at_commit"

# A statement waiting for the next trip: (SQL, parameters, executemany).
Deferred = tuple[str, Any, bool]
# What a trip answers: description, rows, lastrowid, rowcount, whether a transaction is open.
Answer = tuple[Any, list[Any] | None, int, int, bool]

# SQLite asks whether to go on every this many steps of its virtual machine (tens of
# microseconds) while a statement runs on the event loop's thread.
_STEPS_PER_CHECK = 1000
# SQL known to outlast the budget is remembered, up to this many statements (then forgotten).
_LONG_STATEMENTS_KEPT = 512


class DeferredFailed(Exception):
    """A statement sent with a later trip failed (its error is ``__cause__``)."""


def _run_deferred(raw: sqlite3.Connection, begin: str | None, deferred: list[Deferred]) -> None:
    if begin is not None:
        raw.execute(begin)
    try:
        for operation, parameters, many in deferred:
            if many:
                raw.executemany(operation, parameters)
            elif parameters is None:
                raw.execute(operation)
            else:
                raw.execute(operation, parameters)
    except Exception as exc:
        raise DeferredFailed(str(exc)) from exc


def _run(
    connection: aiosqlite.Connection,
    begin: str | None,
    deferred: list[Deferred],
    operation: str,
    parameters: Any,
    many: bool,
) -> Answer:
    """In the connection's thread: open the transaction ``begin`` says (if any), run the
    statements deferred to this trip, execute, fetch every row, close the cursor."""
    raw: sqlite3.Connection = connection._conn
    if begin is not None or deferred:
        _run_deferred(raw, begin, deferred)
    cursor = raw.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else None
        return (
            description,
            rows,
            cursor.lastrowid or 0,
            cursor.rowcount,
            raw.in_transaction,
        )
    finally:
        cursor.close()


async def _run_on_loop(
    connection: aiosqlite.Connection,
    budget: float,
    begin: str | None,
    operation: str,
    parameters: Any,
) -> Answer | None:
    """``_run`` of one statement on the event loop's thread, interrupted once ``budget``
    seconds are spent: then None, and nothing of it holds. (A coroutine, so that the
    statement counts as awaited for SQLAlchemy, which refuses a statement that never was.)"""
    raw: sqlite3.Connection = connection._conn
    deadline = time.perf_counter() + budget
    was_open = raw.in_transaction

    def spent() -> bool:
        return time.perf_counter() > deadline

    raw.set_progress_handler(spent, _STEPS_PER_CHECK)
    try:
        return _run(connection, begin, [], operation, parameters, False)
    except sqlite3.OperationalError as error:
        if error.sqlite_errorcode != sqlite3.SQLITE_INTERRUPT:
            raise
        if begin is not None and not was_open and raw.in_transaction:
            # The BEGIN sent with it: the trip to the thread sends it again.
            raw.rollback()
        return None
    finally:
        raw.set_progress_handler(None, 0)


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """Buffers every row, as the stock cursor does, in one trip to the thread."""

    __slots__ = ("at_commit",)

    def __init__(self, adapt_connection: Any) -> None:
        super().__init__(adapt_connection)
        # Set by ``mark_at_commit`` for the statement about to run.
        self.at_commit = False

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        self._trip(operation, parameters, many=False)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        self._trip(operation, seq_of_parameters, many=True)

    def _trip(self, operation: Any, parameters: Any, *, many: bool) -> None:
        adapted = self._adapt_connection
        assert isinstance(adapted, OneHopConnection)
        if (
            not many
            and not parameters
            and not adapted.in_transaction
            and adapted.pending_begin is None
            and isinstance(operation, str)
            and operation.strip().upper() in _BEGINS
        ):
            # Sent with the next statement (one trip for both).
            adapted.pending_begin = operation
            self.description = None
            self.lastrowid = 0
            self.rowcount = -1
            return
        at_commit, self.at_commit = self.at_commit, False
        if at_commit and (adapted.in_transaction or adapted.pending_begin is not None):
            adapted.deferred.append((operation, parameters, many))
            self.description = None
            self.lastrowid = 0
            self.rowcount = -1
            return
        begin, adapted.pending_begin = adapted.pending_begin, None
        deferred, adapted.deferred = adapted.deferred, []
        dbapi = adapted.dbapi
        try:
            answer = None
            if (
                dbapi.loop_budget > 0
                and not many
                and not deferred
                and READ.get()
                and operation not in dbapi.long_statements
            ):
                answer = self.await_(
                    _run_on_loop(self._connection, dbapi.loop_budget, begin, operation, parameters)
                )
                if answer is None:
                    dbapi.outlasted(operation)
            if answer is None:
                answer = self.await_(
                    self._connection._execute(
                        _run, self._connection, begin, deferred, operation, parameters, many
                    )
                )
            description, rows, lastrowid, rowcount, in_transaction = answer
        except Exception as error:
            # Whether the failed statement left a transaction open is not known: the next
            # rollback must really run.
            adapted.in_transaction = True
            adapted._handle_exception(adapted.failed(error))
        adapted.in_transaction = in_transaction
        if description:
            self.description = description
            self.lastrowid = self.rowcount = -1
            self._rows.clear()
            self._rows.extend(rows or ())
        else:
            self.description = None
            self.lastrowid = lastrowid
            self.rowcount = rowcount


class OneHopConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ("deferred", "in_transaction", "pending_begin", "poisoned")

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        # Whether SQLite holds a transaction open on this connection, as of the last
        # statement (reported from the thread). Connections start in autocommit mode.
        self.in_transaction = False
        # A BEGIN asked for and not sent yet: it goes with the next statement.
        self.pending_begin: str | None = None
        # Statements that go with the next trip (``AT_COMMIT``), in order.
        self.deferred: list[Deferred] = []
        # Why this transaction may not commit: a deferred statement of it failed.
        self.poisoned: str | None = None

    def failed(self, error: Exception) -> Exception:
        """The error to raise for a failed trip (a deferred statement's own error)."""
        if isinstance(error, DeferredFailed) and isinstance(error.__cause__, Exception):
            self.poisoned = str(error.__cause__)
            return error.__cause__
        return error

    def cursor(self, server_side: bool = False) -> AsyncAdapt_aiosqlite_cursor:
        if server_side:
            return super().cursor(server_side=True)
        return OneHopCursor(self)

    def rollback(self) -> None:
        # A transaction whose BEGIN was never sent holds nothing, nor do deferred writes.
        self.pending_begin = None
        self.deferred = []
        self.poisoned = None
        if not self.in_transaction:
            return
        super().rollback()
        self.in_transaction = False

    def commit(self) -> None:
        if self.poisoned is not None:
            raise self.dbapi.OperationalError(
                f"not committed: a statement of this transaction failed ({self.poisoned})"
            )
        if self.pending_begin is not None and not self.in_transaction and not self.deferred:
            # Opened and ran nothing: there is nothing to commit.
            self.pending_begin = None
            return
        if not self.deferred and self.pending_begin is None:
            super().commit()
            self.in_transaction = False
            return
        begin, self.pending_begin = self.pending_begin, None
        deferred, self.deferred = self.deferred, []
        try:
            self.await_(self._connection._execute(_commit, self._connection, begin, deferred))
        except Exception as error:
            self.in_transaction = True
            self._handle_exception(self.failed(error))
        self.in_transaction = False


def _commit(connection: aiosqlite.Connection, begin: str | None, deferred: list[Deferred]) -> None:
    """In the connection's thread: the deferred statements, then COMMIT."""
    raw: sqlite3.Connection = connection._conn
    _run_deferred(raw, begin, deferred)
    raw.commit()


def mark_at_commit(
    _conn: Any,
    cursor: Any,
    _statement: Any,
    _parameters: Any,
    context: Any,
    _many: bool,
) -> None:
    """``before_cursor_execute`` listener of a SQLite engine: a statement executed with
    ``AT_COMMIT`` travels with the next trip."""
    if context is not None and context.execution_options.get(AT_COMMIT):
        cursor.at_commit = True


class OneHopDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def __init__(self, loop_budget: float) -> None:
        super().__init__(aiosqlite, sqlite3)
        # Seconds a read's statement may run on the event loop's thread; 0: none does.
        self.loop_budget = loop_budget
        # SQL that outlasted the budget once: it goes to the connection's thread.
        self.long_statements: set[str] = set()

    def outlasted(self, operation: str) -> None:
        if len(self.long_statements) >= _LONG_STATEMENTS_KEPT:
            self.long_statements.clear()
        self.long_statements.add(operation)

    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        if self.loop_budget > 0:
            # Used from the loop's thread and from its own, never from both at once.
            kw["check_same_thread"] = False
        stock = super().connect(*arg, **kw)
        return OneHopConnection(self, stock._connection)


def one_hop_dbapi(*, loop_budget: float = 0.0) -> OneHopDBAPI:
    """The DB-API module for ``create_async_engine(module=...)`` on SQLite; with a
    ``loop_budget`` (seconds), reads' statements run on the event loop's thread."""
    return OneHopDBAPI(loop_budget)
