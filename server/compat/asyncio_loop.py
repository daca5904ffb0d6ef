"""asyncio's selector event loop with a queue for reads ahead of its own (``server.loop``).

The loop runs, each turn, the callbacks in its ready deque (``_ready``) that were there when
the turn began. ``ReadsFirstLoop`` puts a read's callbacks in a deque of its own and one
callback at the head of ``_ready`` that runs them all, so they run next, before the rest
of the turn. Which callbacks are a read's: those scheduled with ``READ`` set in their
context (``call_soon``: a task's steps and wake-ups), a socket's reader or writer made in
such a context (``_add_callback``, from the selector), and the result of a ``ReadFuture``
(a future made in a read) set from another thread (``call_soon_threadsafe``, how a SQLite
connection's thread answers).
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
from collections.abc import Callable
from typing import Any

from server.loop import READ


class ReadFuture(asyncio.Future):  # type: ignore[type-arg]
    """A future made inside a read: set from another thread, its callback goes ahead."""


class ReadsFirstLoop(asyncio.SelectorEventLoop):
    """``asyncio.SelectorEventLoop`` that runs the callbacks of reads first."""

    def __init__(self) -> None:
        super().__init__()
        self._reads: collections.deque[asyncio.Handle] = collections.deque()
        self._reads_due = False
        self._head: collections.deque[asyncio.Handle] = self._ready  # type: ignore[attr-defined]

    def call_soon(  # type: ignore[override]
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        read = READ.get() if context is None else context.get(READ, False)
        if not read:
            return super().call_soon(callback, *args, context=context)
        self._check_closed()  # type: ignore[attr-defined]
        return self._ahead(asyncio.Handle(callback, args, self, context))

    def call_soon_threadsafe(  # type: ignore[override]
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        if not (args and isinstance(args[0], ReadFuture)):
            return super().call_soon_threadsafe(callback, *args, context=context)
        self._check_closed()  # type: ignore[attr-defined]
        handle = asyncio.Handle(callback, args, self, context)
        self._reads.append(handle)
        # From another thread: a head callback of its own every time (one that finds
        # nothing left to run does nothing), then the loop woken as asyncio wakes it.
        self._head.appendleft(asyncio.Handle(self._run_reads, (), self, None))
        super().call_soon_threadsafe(_nothing)
        return handle

    def create_future(self) -> asyncio.Future[Any]:
        if READ.get():
            return ReadFuture(loop=self)
        return super().create_future()

    def _add_callback(self, handle: asyncio.Handle) -> None:
        # A socket's reader or writer that the selector found ready.
        context: contextvars.Context | None = getattr(handle, "_context", None)
        if context is not None and context.get(READ, False) and not handle.cancelled():
            self._ahead(handle)
            return
        super()._add_callback(handle)  # type: ignore[misc]

    def _ahead(self, handle: asyncio.Handle) -> asyncio.Handle:
        self._reads.append(handle)
        if not self._reads_due:
            self._reads_due = True
            self._head.appendleft(asyncio.Handle(self._run_reads, (), self, None))
        return handle

    def _run_reads(self) -> None:
        self._reads_due = False
        reads = self._reads
        # Those queued so far; what they queue runs from the next head callback.
        for _ in range(len(reads)):
            handle = reads.popleft()
            if not handle.cancelled():
                handle._run()  # type: ignore[attr-defined]


def _nothing() -> None:
    """Wakes the loop (the reads' head callback is already queued)."""
