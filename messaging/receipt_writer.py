"""Group commit for reads and acknowledgements.

When thousands of recipients acknowledge within seconds, one write transaction each would
queue them behind SQLite's single writer (and cost a commit each on PostgreSQL). Requests
are queued instead; a single task takes whatever is waiting (up to ``receipt_batch``) and
applies it in one transaction. Each request still gets its own answer or its own error,
and only after the commit. A refusal of one request (not a recipient, too low a
clearance) is raised before it changes anything, so it never undoes the others; a failure
of the transaction itself fails every request of that batch. The queue is bounded: when
it is full the request is refused with 429.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from server.context import Context, Write
from server.errors import ApiError, TooManyRequests

log = logging.getLogger("dienhong.messaging.receipts")

# What a request does inside the shared transaction: its answer, and the directive whose
# receipts changed (None when nothing changed).
Apply = Callable[[Write], Awaitable[tuple[dict[str, Any], int | None]]]


@dataclass
class _Pending:
    apply: Apply
    future: asyncio.Future[dict[str, Any]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class ReceiptWriter:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(
            maxsize=ctx.settings.receipt_queue_limit)
        self.running = False

    async def submit(self, apply: Apply) -> dict[str, Any]:
        """Apply in the next batch; returns once that batch has committed."""
        pending = _Pending(apply)
        try:
            self._queue.put_nowait(pending)
        except asyncio.QueueFull as exc:
            raise TooManyRequests("Too many receipts are waiting; try again shortly.",
                                  code="busy", details={"retry_after": 1}) from exc
        return await pending.future

    async def run(self) -> None:
        self.running = True
        try:
            while True:
                batch = [await self._queue.get()]
                while len(batch) < self.ctx.settings.receipt_batch and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                await self._write(batch)
        finally:
            self.running = False
            while not self._queue.empty():
                left = self._queue.get_nowait()
                if not left.future.done():
                    left.future.set_exception(
                        TooManyRequests("The server is stopping.", code="busy"))

    async def _write(self, batch: list[_Pending]) -> None:
        answers: list[tuple[_Pending, dict[str, Any]]] = []
        refusals: list[tuple[_Pending, ApiError]] = []
        changed: set[int] = set()
        try:
            async with self.ctx.write() as w:
                for pending in batch:
                    if pending.future.done():  # the client went away meanwhile
                        continue
                    try:
                        answer, directive_id = await pending.apply(w)
                    except ApiError as refusal:
                        refusals.append((pending, refusal))
                        continue
                    answers.append((pending, answer))
                    if directive_id is not None:
                        changed.add(directive_id)
        except Exception as exc:
            log.exception("a batch of %d receipts failed", len(batch))
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        for pending, refused in refusals:
            if not pending.future.done():
                pending.future.set_exception(refused)
        for pending, answer in answers:
            if not pending.future.done():
                pending.future.set_result(answer)
        notifier = self.ctx.extensions.get("messaging.receipts")
        if notifier is not None and changed:
            notifier.mark(changed)


async def run_receipt_writer(ctx: Context) -> None:
    """``Feature.background`` entry."""
    writer: ReceiptWriter = ctx.extensions["messaging.receipt_writer"]
    await writer.run()
