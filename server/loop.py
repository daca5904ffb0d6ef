"""Reads served ahead of writes on the node's event loop.

One asyncio loop runs every request of a process in the order its callbacks became ready.
When writes saturate the process, each turn of the loop runs the work of every closed loop
of posts that became ready meanwhile, and a read waits behind all of it at each step: when
its request arrives, when its statement's answer comes back, at every lock it meets.

With ``DIENHONG_READS_FIRST`` (on by default) the node runs on ``ReadsFirstLoop``
(``server/compat/asyncio_loop.py``), which keeps one more queue, for the callbacks of
reads, and runs that whole queue before anything else it had ready, in the order it was
queued. A read then waits for the callback that is running, not for the turn. Writes run
whenever no read is ready: reads are short and bounded by the rate limits, so they cannot
starve writes, and the order among writes is unchanged.

A read is whatever runs with ``READ`` set in its context:

- the task of each ``GET`` and ``HEAD`` request (``ReadsFirstHttp``,
  ``server/compat/uvicorn_http.py``; not a WebSocket's upgrade), and the tasks it starts:
  each of their steps and whatever wakes them (a lock, a queue, a batched read);
- the answer to a read's SQLite statement, which comes from the connection's thread
  through a future made in the read's context;
- what arrives on a socket opened in a read's context (``opened_as``): the connections of
  the read pool on PostgreSQL (``server.db``);
- what arrives next on a keep-alive HTTP connection whose last request was a read: the
  protocol watches the socket again, as a read's or not, when the kind of request changes.

A read's SQLite statement makes no trip to its connection's thread at all: it runs on the
loop's own thread, within a budget (``DIENHONG_SQLITE_READ_ON_LOOP_MS``, see
``server/compat/aiosqlite_dbapi.py``). Under a storm of writes the trip was most of what
such a read waited for: the thread waiting for the GIL, then the loop for its answer.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# True inside a read: a request served ahead of writes.
READ: contextvars.ContextVar[bool] = contextvars.ContextVar("dienhong_read", default=False)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The node's loop: uvicorn's loop factory (``loop="server.loop:new_event_loop"``)."""
    from server.compat.asyncio_loop import ReadsFirstLoop

    return ReadsFirstLoop()


async def opened_as(coro: Coroutine[Any, Any, T], *, read: bool) -> T:
    """``coro`` run in a task of its own, as a read or not whatever the caller is: a
    connection it opens carries that mark for as long as it lives (``server.db`` opens the
    read pool's connections as reads, the write pool's as writes)."""
    context = contextvars.copy_context()
    context.run(READ.set, read)
    return await asyncio.get_running_loop().create_task(coro, context=context)
