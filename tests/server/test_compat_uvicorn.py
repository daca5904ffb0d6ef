"""server.compat.uvicorn_ws: uvicorn's private state it reads is still there, and the
server fans out the same with the direct write path on and off."""

from __future__ import annotations

import asyncio
import inspect
from contextlib import AsyncExitStack
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.protocol import State
from websockets.server import ServerProtocol

from server.cli import uvicorn_options
from server.compat.uvicorn_ws import CORK_BYTES, CorkedTransport, DirectWebSocketProtocol
from server.settings import Settings
from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.server.support import small_city
from tests.server.test_realtime import emit, events_until


async def _app(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("never called")


async def test_the_private_state_the_direct_path_reads_is_still_there() -> None:
    config = uvicorn.Config(_app, ws=DirectWebSocketProtocol, log_config=None)
    config.load()
    protocol = DirectWebSocketProtocol(config, ServerState(), {}, asyncio.get_running_loop())
    for name in (
        "conn",
        "transport",
        "writable",
        "handshake_complete",
        "close_sent",
        "disconnected",
        "initial_response",
    ):
        assert hasattr(protocol, name), f"uvicorn's protocol lost {name!r}"
    assert isinstance(protocol.writable, asyncio.Event)
    assert protocol.initial_response is None
    assert not (protocol.handshake_complete or protocol.close_sent or protocol.disconnected)
    assert isinstance(protocol.conn, ServerProtocol)
    assert protocol.conn.state is State.CONNECTING
    assert protocol.conn.extensions == []
    for name in ("send_text", "data_to_send"):
        assert callable(getattr(protocol.conn, name)), f"websockets lost {name!r}"
    # The scope (where the extension goes) is made by this method of the base class.
    assert "self.scope" in inspect.getsource(WebSocketsSansIOProtocol.handle_connect)


@pytest.mark.parametrize("direct", [True, False])
def test_the_setting_chooses_the_protocol(direct: bool) -> None:
    options = uvicorn_options(Settings(direct_socket_writes=direct))
    assert options["ws"] is (DirectWebSocketProtocol if direct else WebSocketsSansIOProtocol)


def test_the_setting_is_read_from_the_environment() -> None:
    off = Settings.from_env({"DIENHONG_DIRECT_SOCKET_WRITES": "false"})
    assert off.direct_socket_writes is False
    assert Settings.from_env({}).direct_socket_writes is True


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "asgi"])
async def test_fan_out_to_several_sockets(make_server: MakeServer, direct: bool) -> None:
    server = await make_server(features=[], direct_socket_writes=direct)
    city = await small_city(server)
    unit = f"unit:{city.commune_unit_ids[0]}"
    tokens = [await server.login(name, DEMO_PASSWORD) for name in ("ward001", "ward001")]
    async with AsyncExitStack() as stack:
        sockets = [await stack.enter_async_context(server.socket(token)) for token in tokens]
        connections = server.ctx.hub.connections
        assert len(connections) == len(sockets)
        assert all((c._direct is not None) is direct for c in connections)
        seqs = await emit(server, unit, 20, n=1)
        for ws in sockets:
            assert await events_until(ws, unit, seqs[-1]) == seqs
        # Control frames keep their order with the events either way.
        await sockets[0].send(op="ping")
        assert (await sockets[0].recv())["op"] == "pong"


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "asgi"])
async def test_a_socket_knows_both_ends_of_its_connection(
    make_server: MakeServer, direct: bool
) -> None:
    # The direct protocol takes the addresses from the HTTP protocol it was upgraded from
    # instead of asking the kernel again: the same as the stock protocol reads.
    server = await make_server(features=[], direct_socket_writes=direct)
    await small_city(server)
    token = await server.login("ward001", DEMO_PASSWORD)
    async with server.socket(token) as ws:
        [protocol] = [
            p
            for p in server._server.server_state.connections
            if isinstance(p, WebSocketsSansIOProtocol)
        ]
        scope = protocol.scope
        local = ws.ws.local_address[:2]
        remote = ws.ws.remote_address[:2]
    assert isinstance(protocol, DirectWebSocketProtocol) is direct
    assert (scope["client"][0], scope["client"][1]) == (local[0], local[1])
    assert (scope["server"][0], scope["server"][1]) == (remote[0], remote[1])
    assert scope["scheme"] == "ws"


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "asgi"])
async def test_compressed_sockets_get_every_event(make_server: MakeServer, direct: bool) -> None:
    server = await make_server(
        features=[], ws_per_message_deflate=True, direct_socket_writes=direct
    )
    city = await small_city(server)
    unit = f"unit:{city.commune_unit_ids[0]}"
    token = await server.login("ward001", DEMO_PASSWORD)
    async with server.socket(token, compression="deflate") as ws:
        seqs = await emit(server, unit, 3, text="Khẩn " * 200)
        assert await events_until(ws, unit, seqs[-1]) == seqs


class RecordingTransport:
    """The calls a transport gets, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", bytes(data)))

    def close(self) -> None:
        self.calls.append(("close", b""))
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        self.calls.append(("pause_reading", b""))


async def test_writes_of_one_loop_turn_leave_together_in_order() -> None:
    transport = RecordingTransport()
    corked = CorkedTransport(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    corked.write(b"ready")
    corked.write(b"")
    corked.write(b"event")
    assert transport.calls == []
    assert corked.get_write_buffer_size() == len(b"readyevent")
    await asyncio.sleep(0)
    assert transport.calls == [("write", b"readyevent")]
    # A turn's writes past CORK_BYTES go out at once: the transport's own flow control
    # (pause_writing) sees them.
    transport.calls.clear()
    big = b"x" * CORK_BYTES
    corked.write(b"head")
    corked.write(big)
    assert transport.calls == [("write", b"head" + big)]
    corked.write(big)
    assert transport.calls[-1] == ("write", big)
    # Everything else is the transport's; closing writes what was gathered first.
    corked.pause_reading()
    corked.write(b"last frame")
    corked.close()
    assert transport.calls[-3:] == [
        ("pause_reading", b""),
        ("write", b"last frame"),
        ("close", b""),
    ]
    await asyncio.sleep(0)
    assert transport.calls[-1] == ("close", b"")


async def test_the_protocol_writes_through_the_corked_transport(make_server: MakeServer) -> None:
    server = await make_server(features=[])
    city = await small_city(server)
    token = await server.login("ward001", DEMO_PASSWORD)
    async with server.socket(token):
        (connection,) = server.ctx.hub.connections
        direct = connection._direct
        assert isinstance(direct, DirectWebSocketProtocol)
        assert isinstance(direct.transport, CorkedTransport)
    assert city.commune_unit_ids
