"""Reads served ahead of writes (server.loop, server/compat/asyncio_loop.py,
server/compat/uvicorn_http.py): what goes ahead, in what order, and what does not.

The ordering tests run the node's loop and, as a control, asyncio's own, so each shows
the difference the loop makes and fails on the stock one."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import socket
from collections.abc import Callable, Iterator
from typing import Any

import aiosqlite.core
import httpx
import pytest
import uvicorn
import websockets
from sqlalchemy import text

from server.cli import uvicorn_options
from server.compat.asyncio_loop import ReadFuture, ReadsFirstLoop
from server.compat.uvicorn_http import ReadsFirstHttp
from server.db import Database
from server.loop import READ, new_event_loop, opened_as
from server.settings import Settings
from tests.harness import PG_URL, eventually, free_socket

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "reads_first": new_event_loop,
    "stock": asyncio.SelectorEventLoop,
}


def read_context() -> contextvars.Context:
    context = contextvars.copy_context()
    context.run(READ.set, True)
    return context


def run_on(factory: Callable[[], asyncio.AbstractEventLoop], main: Any) -> Any:
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def test_the_private_state_the_loop_uses_is_still_there() -> None:
    loop = new_event_loop()
    try:
        assert isinstance(loop, ReadsFirstLoop)
        assert loop._head is loop._ready  # type: ignore[attr-defined]
        # Each turn runs the callbacks that were in ``_ready`` when it began, from the left.
        assert "self._ready.popleft()" in inspect.getsource(asyncio.BaseEventLoop._run_once)
        assert callable(asyncio.BaseEventLoop._add_callback)  # type: ignore[attr-defined]
        handle = asyncio.Handle(print, (), loop, read_context())
        assert handle._context.get(READ) is True  # type: ignore[attr-defined]
        assert callable(handle._run)  # type: ignore[attr-defined]
        # How a SQLite connection's thread answers: the future is the first argument.
        source = inspect.getsource(aiosqlite.core)
        assert "call_soon_threadsafe(set_result, future, result)" in source
        assert "call_soon_threadsafe(set_exception, future, e)" in source
    finally:
        loop.close()


@pytest.mark.parametrize("name", LOOPS)
def test_a_reads_callbacks_run_before_what_was_ready_in_their_order(name: str) -> None:
    order: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for n in range(3):
            loop.call_soon(order.append, f"write {n}")
        context = read_context()
        loop.call_soon(order.append, "read 0", context=context)
        loop.call_soon(order.append, "cancelled read", context=context).cancel()
        loop.call_soon(order.append, "read 1", context=context)
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    run_on(LOOPS[name], main())
    reads_first = ["read 0", "read 1", "write 0", "write 1", "write 2"]
    if name == "reads_first":
        assert order == reads_first
    else:
        assert order == ["write 0", "write 1", "write 2", "read 0", "read 1"]


@pytest.mark.parametrize("name", LOOPS)
def test_a_read_task_finishes_before_writes_ready_ahead_of_each_of_its_steps(name: str) -> None:
    # 20 writers, each a task that takes 5 steps; a read of 5 steps started after them.
    # Ahead of writes, each of the read's steps runs before the writers' next ones.
    order: list[str] = []

    async def writer(n: int) -> None:
        for step in range(5):
            order.append(f"write {n}.{step}")
            await asyncio.sleep(0)

    async def read() -> None:
        for step in range(5):
            order.append(f"read .{step}")
            await asyncio.sleep(0)

    async def main() -> None:
        writers = [asyncio.create_task(writer(n)) for n in range(20)]
        await asyncio.sleep(0)
        reader = asyncio.get_running_loop().create_task(read(), context=read_context())
        await asyncio.gather(reader, *writers)

    run_on(LOOPS[name], main())
    writes_before_the_reads_end = order.index("read .4") - 4
    if name == "reads_first":
        # The first step of all 20 writers ran before the read was started.
        assert writes_before_the_reads_end == 20
    else:
        assert writes_before_the_reads_end >= 20 * 5 - 1


@pytest.mark.parametrize("name", LOOPS)
def test_an_answer_from_another_thread_to_a_read_goes_ahead(name: str) -> None:
    # How a SQLite connection's thread answers a statement: call_soon_threadsafe with the
    # future first. The future of a read resumes it before what the loop had ready.
    order: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        read_future = read_context().run(loop.create_future)
        write_future = loop.create_future()
        assert isinstance(read_future, ReadFuture) is (name == "reads_first")
        assert not isinstance(write_future, ReadFuture)
        for n in range(3):
            loop.call_soon(order.append, f"write {n}")
        loop.call_soon_threadsafe(lambda f: f.set_result(None), write_future)
        loop.call_soon_threadsafe(lambda f: f.set_result(None), read_future)
        # What a read waits with runs in the read's context (a task's wake-up does).
        read_future.add_done_callback(
            lambda _: order.append("read answered"), context=read_context()
        )
        write_future.add_done_callback(lambda _: order.append("write answered"))
        await asyncio.gather(read_future, write_future)

    run_on(LOOPS[name], main())
    if name == "reads_first":
        assert order[:2] == ["read answered", "write 0"]
    else:
        assert order.index("read answered") > order.index("write 2")
    assert order.index("write answered") > order.index("write 2")


@pytest.fixture
def socket_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


@pytest.mark.parametrize("name", LOOPS)
def test_a_socket_opened_by_a_read_is_served_ahead(
    name: str, socket_pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, theirs = socket_pair
    order: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def readable() -> None:
            ours.recv(16)
            order.append("read's socket")
            loop.remove_reader(ours)
            done.set_result(None)

        read_context().run(loop.add_reader, ours, readable)
        await asyncio.sleep(0)

        def write_then_more() -> None:
            theirs.send(b"x")
            # Ready for the next turn, before the selector finds the socket readable.
            for n in range(3):
                loop.call_soon(order.append, f"write {n}")

        loop.call_soon(write_then_more)
        await done
        await asyncio.sleep(0)

    run_on(LOOPS[name], main())
    if name == "reads_first":
        assert order[0] == "read's socket"
    else:
        assert order.index("read's socket") == 3


def test_opened_as_sets_the_mark_whoever_asks() -> None:
    async def mark() -> bool:
        return READ.get()

    async def main() -> tuple[bool, bool]:
        from_a_read = read_context().run(asyncio.ensure_future, opened_as(mark(), read=False))
        return await opened_as(mark(), read=True), await from_a_read

    assert run_on(new_event_loop, main()) == (True, False)


# --- the HTTP protocol -------------------------------------------------------------------
async def serve(
    settings: Settings, seen: list[tuple[str, bool]]
) -> tuple[uvicorn.Server, asyncio.Task[None], str]:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] == "websocket":
            seen.append(("websocket", READ.get()))
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1000})
            return
        seen.append((scope["method"], READ.get()))
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    sock = free_socket()
    options = uvicorn_options(settings) | {"log_level": "warning"}
    server = uvicorn.Server(uvicorn.Config(app, **options))  # type: ignore[arg-type]
    serving = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))

    def started() -> bool:
        if serving.done():
            serving.result()  # raises what stopped it
        return bool(server.started)

    await eventually(started, "the server to start", interval=0.01)
    return server, serving, f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("reads_first", [True, False], ids=["reads_first", "stock"])
async def test_gets_and_heads_are_reads_and_nothing_else_is(reads_first: bool) -> None:
    settings = Settings(reads_first=reads_first)
    assert (uvicorn_options(settings)["http"] == "server.compat.uvicorn_http:ReadsFirstHttp") is (
        reads_first
    )
    seen: list[tuple[str, bool]] = []
    server, serving, address = await serve(settings, seen)
    try:
        async with httpx.AsyncClient(base_url=f"http://{address}") as client:
            # One keep-alive connection: a read after a write after a read.
            for method in ("GET", "POST", "HEAD", "PUT", "GET", "DELETE", "PATCH"):
                assert (await client.request(method, "/", content=b"{}")).status_code == 200
        async with websockets.connect(f"ws://{address}/ws") as ws:
            with pytest.raises(websockets.ConnectionClosedOK):
                await ws.recv()
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 15)
    reads = {"GET", "HEAD"}
    assert seen == [
        (method, reads_first and method in reads)
        for method in ("GET", "POST", "HEAD", "PUT", "GET", "DELETE", "PATCH", "websocket")
    ]


async def test_a_keep_alive_socket_is_watched_as_its_last_request_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    protocols: list[ReadsFirstHttp] = []
    made = ReadsFirstHttp.connection_made

    def keep(protocol: ReadsFirstHttp, transport: Any) -> None:
        protocols.append(protocol)
        made(protocol, transport)

    monkeypatch.setattr(ReadsFirstHttp, "connection_made", keep)
    loop = asyncio.get_running_loop()

    def watched_as_a_read() -> bool:
        # The callback the selector runs when the connection's socket has data.
        (protocol,) = protocols
        fd = protocol.transport.get_extra_info("socket").fileno()
        reader = loop._selector.get_key(fd).data[0]  # type: ignore[attr-defined]
        return bool(reader._context.get(READ, False))

    server, serving, address = await serve(Settings(), [])
    methods = ("GET", "GET", "POST", "HEAD", "PUT", "PATCH", "GET", "DELETE")
    watched: list[bool] = []
    try:
        async with httpx.AsyncClient(base_url=f"http://{address}") as client:
            for method in methods:
                assert (await client.request(method, "/", content=b"{}")).status_code == 200
                watched.append(watched_as_a_read())
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 15)
    assert watched == [method in {"GET", "HEAD"} for method in methods]


@pytest.mark.parametrize("reads_first", [True, False], ids=["reads_first", "stock"])
def test_the_setting_chooses_the_loop_uvicorn_runs(reads_first: bool) -> None:
    options = uvicorn_options(Settings(reads_first=reads_first))
    factory = uvicorn.Config(lambda: None, **options).get_loop_factory()  # type: ignore[arg-type]
    assert factory is not None
    loop = factory()
    try:
        assert isinstance(loop, ReadsFirstLoop) is reads_first
    finally:
        loop.close()


def test_the_protocol_overrides_what_uvicorn_still_calls() -> None:
    from uvicorn.protocols.http.flow_control import FlowControl
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    # uvicorn starts the request's task in the method this protocol wraps.
    assert "_start_asgi_task" in inspect.getsource(HttpToolsProtocol.on_headers_complete)
    # Whether uvicorn paused reading itself (then it resumes from the request's task).
    assert "self.read_paused" in inspect.getsource(FlowControl.resume_reading)
    # asyncio makes a socket's callback in the context it is watched from.
    source = inspect.getsource(asyncio.selector_events.BaseSelectorEventLoop._add_reader)
    assert "events.Handle(callback, args, self, None)" in source
    assert ReadsFirstHttp.on_headers_complete is not HttpToolsProtocol.on_headers_complete


# --- PostgreSQL's pools ------------------------------------------------------------------
@pytest.mark.skipif(not PG_URL, reason="PostgreSQL is not configured")
def test_the_read_pools_answers_go_ahead_and_the_write_pools_do_not(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    ahead: list[str] = []
    original = ReadsFirstLoop._add_callback

    def spy(self: ReadsFirstLoop, handle: asyncio.Handle) -> None:
        context = handle._context  # type: ignore[attr-defined]
        if context.get(READ, False):
            ahead.append(getattr(handle._callback, "__name__", "?"))  # type: ignore[attr-defined]
        original(self, handle)

    monkeypatch.setattr(ReadsFirstLoop, "_add_callback", spy)

    async def main() -> tuple[list[str], list[str]]:
        db = Database(Settings(data_dir=tmp_path, database_url=PG_URL))
        try:
            # Neither asks from a read: the pools decide.
            async with db.write_session() as session:
                assert (await session.execute(text("SELECT 1"))).scalar() == 1
            after_write = list(ahead)
            assert (await db.read_row(text("SELECT 2"))) == (2,)
            return after_write, ahead[len(after_write) :]
        finally:
            await db.dispose()

    after_write, after_read = run_on(new_event_loop, main())
    assert after_write == []
    assert "_read_ready" in after_read
