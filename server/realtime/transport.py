"""The WebSocket protocol the server runs under uvicorn, with a direct write path.

Through ASGI every frame a socket is sent costs a task step and several layers of
``send`` wrappers (Starlette's exception handlers, the server's own ``send``). For a
broadcast to thousands of sockets that overhead is most of the work. So the server runs
uvicorn's sans-I/O ``websockets`` protocol with one addition: it puts itself in the ASGI
scope under ``extensions["dienhong.direct"]``, and the hub writes a frame straight into
the protocol's transport when the socket can take it at once (its write buffer is below
the high-water mark and nothing of the socket waits in its queue). Anything else - a
socket whose buffer is full, the handshake, closing - goes the ASGI way as before, so
flow control and the bounded queues work unchanged.

Under another ASGI server the extension is absent and every frame goes through ASGI.
"""

from __future__ import annotations

from typing import Any, Protocol

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.http11 import Request

DIRECT_EXTENSION = "dienhong.direct"


class DirectSocket(Protocol):
    def try_send_text(self, text: str, encoded: bytes | None = None) -> bool: ...


class DirectWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O protocol that can also be written to without ASGI."""

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # The scope exists only when the handshake goes on to the application; its task
        # is created but has not run yet, so the extension is there before it starts.
        scope: dict[str, Any] | None = getattr(self, "scope", None)
        if scope is not None and not self.close_sent:
            scope.setdefault("extensions", {})[DIRECT_EXTENSION] = self

    def try_send_text(self, text: str, encoded: bytes | None = None) -> bool:
        """Write one text frame now if the socket takes it without waiting.

        ``encoded`` is ``text`` already in UTF-8, when the caller has it.
        False when it cannot (handshake not done, closing, or the transport's buffer is
        over its high-water mark); the caller then queues the frame for the ASGI path.
        """
        if (not self.handshake_complete or self.close_sent or self.disconnected
                or self.initial_response is not None or not self.writable.is_set()
                or self.transport.is_closing()):
            return False
        try:
            self.conn.send_text(text.encode() if encoded is None else encoded)
        except InvalidState:
            return False
        for chunk in self.conn.data_to_send():
            self.transport.write(chunk)
        return True


def direct_socket(scope: dict[str, Any]) -> DirectSocket | None:
    """The direct write path of a WebSocket scope, when the server offers one."""
    extensions = scope.get("extensions") or {}
    direct = extensions.get(DIRECT_EXTENSION)
    return direct if hasattr(direct, "try_send_text") else None
