"""uvicorn's sans-I/O WebSocket protocol with a direct write path for the hub.

What the hub gets and why is told in ``server.realtime.transport``: the protocol puts
itself in the ASGI scope under ``extensions["dienhong.direct"]``, and ``try_send`` writes
a prepared frame straight into the socket's transport when it can take it at once.

This subclass reads uvicorn's private connection state (``conn``, ``transport``,
``writable``, ``handshake_complete``, ``close_sent``, ``disconnected``,
``initial_response``; ``scope`` as set by ``handle_connect``) and websockets'
``ServerProtocol`` (``state``, ``extensions``, ``send_text``, ``data_to_send``).
``tests/server/test_compat_uvicorn.py`` checks they are still there; with
``DIENHONG_DIRECT_SOCKET_WRITES=false`` the server runs the stock protocol instead and
every frame goes through ASGI.

Writes of one socket in one turn of the event loop leave as one: the protocol's transport
is wrapped (``CorkedTransport``) so that the handshake's answer, ``ready``, a catch-up's
events and its ``subscribed``, presence signals and uvicorn's own frames (pongs, close)
gathered in the same turn cost one system call and one wake-up of the client, in the
order they were written. A write over ``CORK_BYTES`` goes out at once, so the transport's
own flow control (``pause_writing``, the ``writable`` flag the hub checks) still holds.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.http11 import Request
from websockets.protocol import State

from server.realtime.transport import DIRECT_EXTENSION, PreparedFrame

# Bytes a socket's writes may gather within one loop turn before they go out at once.
CORK_BYTES = 65_536


class CorkedTransport:
    """A socket's transport whose writes within one loop turn are written together.

    Everything else is the transport's own; closing writes what was gathered first.
    """

    __slots__ = ("_loop", "_pending", "_size", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        pending = self._pending
        if not pending:
            if len(data) >= CORK_BYTES:
                self.transport.write(data)
                return
            self._loop.call_soon(self.flush)
        pending.append(data)
        self._size += len(data)
        if self._size >= CORK_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write out what was gathered (a no-op when nothing is, or the socket closed)."""
        pending = self._pending
        if not pending:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        self._size = 0
        if not self.transport.is_closing():
            self.transport.write(data)

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.transport.resume_reading()

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() + self._size

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    def abort(self) -> None:
        self._pending.clear()
        self._size = 0
        self.transport.abort()

    def __getattr__(self, name: str) -> Any:
        # pause_reading, resume_reading, get_extra_info…: the transport's own.
        return getattr(self.transport, name)


class DirectWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O protocol that can also be written to without ASGI."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        corked = CorkedTransport(transport, self.loop)  # type: ignore[arg-type]
        http = transport.get_protocol()  # type: ignore[attr-defined]
        if not isinstance(http, HttpToolsProtocol) or http.transport is not transport:
            super().connection_made(corked)  # type: ignore[arg-type]
            return
        # Upgraded from uvicorn's HTTP protocol (still the transport's protocol until the
        # handshake is handed over): the addresses it read from the socket a moment ago
        # are these, so they are not asked of the kernel twice more (what the base class
        # does; a storm of reconnecting sockets feels each system call).
        self.connections.add(self)
        self.transport = corked  # type: ignore[assignment]
        self.server = http.server
        self.client = http.client
        self.scheme = "wss" if http.scheme == "https" else "ws"

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # The scope exists only when the handshake goes on to the application; its task
        # is created but has not run yet, so the extension is there before it starts.
        scope: dict[str, Any] | None = getattr(self, "scope", None)
        if scope is not None and not self.close_sent:
            scope.setdefault("extensions", {})[DIRECT_EXTENSION] = self

    def try_send(self, frame: PreparedFrame) -> bool:
        """Write one text frame now if the socket takes it without waiting.

        False when it cannot (handshake not done, closing, or the transport's buffer is
        over its high-water mark); the caller then queues the frame for the ASGI path.
        """
        conn = self.conn
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or self.initial_response is not None
            or not self.writable.is_set()
            or conn.state is not State.OPEN
            or self.transport.is_closing()
        ):
            return False
        if conn.extensions:
            # Compression is per socket: let the protocol frame it.
            try:
                conn.send_text(frame.encoded)
            except InvalidState:
                return False
            for chunk in conn.data_to_send():
                self.transport.write(chunk)
            return True
        # uvicorn writes out the protocol's output after every call; should anything be
        # left (a pong), it goes first, so frames stay in order.
        for chunk in conn.data_to_send():
            self.transport.write(chunk)
        self.transport.write(frame.wire)
        return True


def websocket_protocol(direct_writes: bool) -> type[WebSocketsSansIOProtocol]:
    """The protocol class for uvicorn's ``ws`` option: with or without direct writes."""
    return DirectWebSocketProtocol if direct_writes else WebSocketsSansIOProtocol
