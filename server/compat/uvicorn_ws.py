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
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.http11 import Request
from websockets.protocol import State

from server.realtime.transport import DIRECT_EXTENSION, PreparedFrame


class DirectWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O protocol that can also be written to without ASGI."""

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
