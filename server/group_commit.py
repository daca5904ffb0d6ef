"""Group commit: many small writes from many requests in one transaction.

When hundreds of delegates vote or thousands of clerks acknowledge within seconds, one
write transaction each would queue them behind SQLite's single writer (and cost a commit
each on PostgreSQL). A ``GroupCommit`` queues the requests instead; one task per node takes
whatever is waiting (up to ``batch_size``) and writes it in one transaction through
``ctx.write()``. Each request keeps its own answer:

1. **Judged alone, before the transaction.** ``judge`` is pure (no database, no clock):
   an id beyond what the database stores, text that cannot be encoded, a field out of
   range is refused there with its 4xx and never reaches the queue.
2. **One bounded queue.** A full queue answers 429 ``busy`` with ``retry_after``; a node
   that is stopping (or not yet serving) answers 503 ``shutting_down``.
3. **A SAVEPOINT per item.** ``prepare`` reads what the whole batch shares (locks, seats,
   rows of the batch's users); then every item runs ``apply`` inside its own savepoint. A
   refusal (``ApiError``) or an unexpected error rolls back that item alone, with its
   events and after-commit callbacks; the others go on. A kind whose ``apply`` only
   changes objects ``prepare`` loaded (or only judges, leaving the writes to ``finish``),
   and refuses before changing any, answers False from ``isolate``: a savepoint costs
   three statements per item (SAVEPOINT, the item's flush, RELEASE), and its changes are
   then flushed together at commit. There an unexpected error fails the batch, which is
   written again item by item (point 5).
4. **Audit in one go.** The records the items ask for are chained with one lock of the
   audit head and one insert (``server.audit.append_audit_many``), after everything else
   the batch writes.
5. **Answers after the commit.** If the transaction itself fails (a deadlock, a key taken
   by another node), every item of the batch is written again in a transaction of its own,
   so a fault that belongs to one item fails that item alone. An item whose error
   ``should_retry`` (a deadlock or serialization failure, by default; a kind adds e.g.
   a unique key lost to a concurrent writer) is retried alone, up to ``attempts`` times:
   a lost lock race never reaches the client as a 500.

A kind whose items keep the partitioned write's rules (``server.context``: ``prepare``
reserves every topic the batch emits on, the items change only those topics' partition)
says so with ``partitioned = True``: on PostgreSQL its batches then run beside the other
nodes' partitioned batches instead of one at a time.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from server.audit import AuditEntry
from server.context import Context, Write
from server.db import retryable_sqlstate
from server.errors import ApiError, BadRequest, TooManyRequests

log = logging.getLogger("dienhong.group_commit")

ItemT = TypeVar("ItemT")
PreparedT = TypeVar("PreparedT")
ResultT = TypeVar("ResultT")

# Largest id a row can have: ids are INTEGER columns, 32-bit signed on PostgreSQL (64 on
# SQLite). A larger one names nothing, and PostgreSQL would refuse the query outright.
MAX_STORED_ID = 2**31 - 1
# What a client told "busy" waits before trying again, in seconds.
BUSY_RETRY_AFTER_SECS = 1


class ShuttingDown(ApiError):
    """The node is stopping (or not serving yet): nothing of the request was written."""

    status = 503
    code = "shutting_down"


def busy(what: str) -> TooManyRequests:
    return TooManyRequests(
        f"Too many {what} are waiting to be written; try again shortly.",
        code="busy",
        details={"retry_after": BUSY_RETRY_AFTER_SECS},
    )


def is_stored_id(value: int) -> bool:
    """Could a row have this id?"""
    return 0 < value <= MAX_STORED_ID


def require_encodable(value: str, field_name: str) -> None:
    """400 for text holding a lone surrogate (valid JSON, but no UTF-8 encodes it)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRequest(
            f"{field_name} holds a character that is not valid Unicode text.", code="invalid_text"
        ) from exc


@dataclass
class Applied(Generic[ResultT]):
    """What ``apply`` made of one item: its answer, audit records, after-commit work."""

    result: ResultT
    audit: list[AuditEntry] = field(default_factory=list)
    after_commit: list[Callable[[], Any]] = field(default_factory=list)


@dataclass
class _Pending(Generic[ItemT, ResultT]):
    item: ItemT
    future: asyncio.Future[ResultT]


class GroupCommit(abc.ABC, Generic[ItemT, PreparedT, ResultT]):
    """A node's batching writer for one kind of request (see the module docstring)."""

    # Plural noun for messages and logs ("ballots", "receipts").
    what = "requests"
    # Tries of an item whose error ``should_retry`` (first write included).
    attempts = 3
    # Do the batches keep the partitioned write's rules (module docstring)?
    partitioned = False

    def __init__(self, ctx: Context, *, batch_size: int, queue_limit: int) -> None:
        self.ctx = ctx
        self.batch_size = max(1, batch_size)
        self._queue: asyncio.Queue[_Pending[ItemT, ResultT]] = asyncio.Queue(
            maxsize=max(1, queue_limit)
        )
        self._serving = False
        self._waiting = 0
        ctx.metrics.write_queue_depth.labels(kind=self.what).set_function(lambda: self._waiting)

    # --- what a kind of request defines -----------------------------------------------

    @abc.abstractmethod
    def judge(self, item: ItemT) -> None:
        """Refuse (raise ``ApiError``) what can be refused without the database."""

    @abc.abstractmethod
    async def prepare(self, w: Write, items: Sequence[ItemT]) -> PreparedT:
        """Read (and lock) what the batch's items share; change nothing."""

    @abc.abstractmethod
    async def apply(self, w: Write, item: ItemT, prepared: PreparedT) -> Applied[ResultT]:
        """Write one item (inside its savepoint); raise ``ApiError`` to refuse it."""

    def should_retry(self, error: BaseException) -> bool:
        """Is this failure of an item worth one more try alone (a lost race)? A deadlock
        or a serialization failure always is; a kind may add its own lost races."""
        return retryable_sqlstate(error) is not None

    def _count_conflict(self, error: BaseException) -> None:
        """Count a transaction (a batch or one item) lost to a deadlock or serialization
        failure; it is written again."""
        state = retryable_sqlstate(error)
        if state is not None:
            self.ctx.metrics.write_conflicts.labels(sqlstate=state).inc()

    def isolate(self, item: ItemT) -> bool:
        """Does ``apply`` write for this item (then it runs in a savepoint of its own)?

        An item whose ``apply`` only reads and judges, and leaves its writes to ``finish``,
        saves the savepoint's two round trips; its refusal (``ApiError``) changes nothing,
        and any other error fails the batch (each item is then written alone)."""
        return True

    async def finish(self, w: Write, prepared: PreparedT) -> None:
        """Write what the applied items left for the whole batch (bulk statements)."""

    # --- the mechanism ------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Requests in the queue, not yet taken into a batch."""
        return self._queue.qsize()

    @property
    def waiting(self) -> int:
        """Requests submitted and not answered yet (queued or in the batch being written)."""
        return self._waiting

    async def submit(self, item: ItemT) -> ResultT:
        """Judge the item, queue it, and return its answer once its batch has committed."""
        return await self.offer(item)

    def offer(self, item: ItemT) -> asyncio.Future[ResultT]:
        """Judge the item and queue it without waiting: the future holds its answer once its
        batch has committed (a socket goes on reading frames meanwhile). Refusals of
        ``judge``, a full queue and a stopping node raise at once."""
        self.judge(item)
        if not self._serving:
            raise ShuttingDown("The server is not taking writes right now; try again shortly.")
        pending = _Pending(item, asyncio.get_running_loop().create_future())
        try:
            self._queue.put_nowait(pending)
        except asyncio.QueueFull:
            raise busy(self.what) from None
        self._waiting += 1
        pending.future.add_done_callback(self._answered)
        return pending.future

    def _answered(self, _future: asyncio.Future[ResultT]) -> None:
        self._waiting -= 1

    async def run(self) -> None:
        """The node's writer task: a batch at a time, until cancelled."""
        self._serving = True
        batch: list[_Pending[ItemT, ResultT]] = []
        try:
            while True:
                batch = [await self._queue.get()]
                while len(batch) < self.batch_size and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                await self._write(batch)
                batch = []
        finally:
            self._serving = False
            stopping = ShuttingDown("The server is stopping; try again shortly.")
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            for pending in batch:
                _answer(pending, stopping)

    async def _write(self, batch: list[_Pending[ItemT, ResultT]]) -> None:
        live = [p for p in batch if not p.future.done()]  # callers that went away: skip
        if not live:
            return
        try:
            outcomes = await self._transaction(live)
        except Exception as exc:
            self._count_conflict(exc)
            if len(live) == 1:
                if self.should_retry(exc):
                    log.warning("one of the %s lost a race; writing it again", self.what)
                else:
                    log.exception("writing one of the %s failed", self.what)
                outcomes = [await self._alone(live[0])]
            else:
                log.warning(
                    "a batch of %d %s failed as a whole; writing each alone",
                    len(live),
                    self.what,
                    exc_info=True,
                )
                outcomes = [await self._alone(p) for p in live]
        else:
            for index, (pending, outcome) in enumerate(zip(live, outcomes, strict=True)):
                if isinstance(outcome, BaseException) and self.should_retry(outcome):
                    outcomes[index] = await self._alone(pending, tried=1)
        for pending, outcome in zip(live, outcomes, strict=True):
            _answer(pending, outcome)

    async def _alone(
        self, pending: _Pending[ItemT, ResultT], tried: int = 0
    ) -> ResultT | BaseException:
        outcome: ResultT | BaseException = RuntimeError("not written")
        while tried < self.attempts:
            tried += 1
            try:
                [outcome] = await self._transaction([pending])
            except Exception as exc:
                self._count_conflict(exc)
                if self.should_retry(exc) and tried < self.attempts:
                    log.warning("one of the %s lost a race; writing it again", self.what)
                else:
                    log.exception("writing one of the %s failed", self.what)
                outcome = exc
            if not (isinstance(outcome, BaseException) and self.should_retry(outcome)):
                break
        return outcome

    async def _transaction(
        self, batch: Sequence[_Pending[ItemT, ResultT]]
    ) -> list[ResultT | BaseException]:
        outcomes: list[ResultT | BaseException] = []
        async with self.ctx.write(partitioned=self.partitioned) as w:
            prepared = await self.prepare(w, [p.item for p in batch])
            audit: list[AuditEntry] = []
            for pending in batch:
                isolated = self.isolate(pending.item)
                if isolated:
                    # Events the earlier items allocated in memory are stored before this
                    # item's savepoint: rolling it back must not take them along.
                    await w.flush_log()
                mark = w.mark()
                try:
                    if isolated:
                        async with w.session.begin_nested():
                            applied = await self.apply(w, pending.item, prepared)
                    else:
                        applied = await self.apply(w, pending.item, prepared)
                except ApiError as exc:
                    # Rolled back to the savepoint (or nothing written): forget what the
                    # item queued to publish.
                    w.rollback_to(mark)
                    outcomes.append(exc)
                    continue
                except Exception as exc:
                    if not isolated:
                        # No savepoint to roll back to: the batch fails and goes item by item.
                        raise
                    w.rollback_to(mark)
                    self._count_conflict(exc)
                    if not self.should_retry(exc):
                        log.exception("one of a batch of %d %s failed", len(batch), self.what)
                    outcomes.append(exc)
                    continue
                audit.extend(applied.audit)
                for callback in applied.after_commit:
                    w.after_commit(callback)
                outcomes.append(applied.result)
            await self.finish(w, prepared)
            # Queued in a partitioned write: chained after its events, the head last.
            await w.audit_many(audit)
        return outcomes


def _answer(pending: _Pending[ItemT, ResultT], outcome: ResultT | BaseException) -> None:
    future = pending.future
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
