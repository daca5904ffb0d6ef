"""The WebSocket protocol the server runs under uvicorn, with a direct write path.

Through ASGI every frame a socket is sent costs a task step and several layers of
``send`` wrappers (Starlette's exception handlers, the server's own ``send``). For a
broadcast to thousands of sockets that overhead is most of the work. So the server runs
uvicorn's sans-I/O ``websockets`` protocol with one addition (``server.compat.uvicorn_ws``;
off with ``DIENHONG_DIRECT_SOCKET_WRITES=false``): it puts itself in the ASGI scope under
``extensions["dienhong.direct"]``, and the hub writes a frame straight into the
protocol's transport when the socket can take it at once (its write buffer is below the
high-water mark and nothing of the socket waits in its queue). Anything else - a
socket whose buffer is full, the handshake, closing - goes the ASGI way as before, so
flow control and the bounded queues work unchanged.

A frame for many sockets is prepared once (``PreparedFrame``): encoded to UTF-8 once and,
for sockets without a compression extension, framed once, so a broadcast writes the same
bytes to every socket (server frames are not masked). Under another ASGI server the
extension is absent and every frame goes through ASGI.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any, Protocol

DIRECT_EXTENSION = "dienhong.direct"
# FIN bit and the text opcode: a whole text message in one frame.
_FIN_TEXT = 0x81


class FrameTail:
    """The end of event frames shared by the events of one write (type, payload, time),
    as text and, once asked for, encoded: a write to 3,200 inboxes encodes it once."""

    __slots__ = ("_encoded", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._encoded: bytes | None = None

    @property
    def encoded(self) -> bytes:
        if self._encoded is None:
            self._encoded = self.text.encode()
        return self._encoded


class PreparedFrame:
    """A text message encoded once, and framed once, for every socket it is written to.

    Made from its text, or from a head and a shared ``FrameTail``: then only the short
    head is encoded per message, and the text is joined only if something asks for it.
    """

    __slots__ = ("_encoded", "_head", "_tail", "_text", "_wire")

    def __init__(
        self, text: str | None = None, *, head: str = "", tail: FrameTail | None = None
    ) -> None:
        if text is None and tail is None:
            raise ValueError("a frame needs its text or a tail")
        self._text = text
        self._head = head
        self._tail = tail
        self._encoded: bytes | None = None
        self._wire: bytes | None = None

    @property
    def text(self) -> str:
        if self._text is None:
            assert self._tail is not None
            self._text = self._head + self._tail.text
        return self._text

    @property
    def encoded(self) -> bytes:
        if self._encoded is None:
            if self._tail is not None and self._text is None:
                # Only the short head is encoded here; the tail's bytes are shared.
                self._encoded = self._head.encode() + self._tail.encoded
            else:
                self._encoded = self.text.encode()
        return self._encoded

    @property
    def wire(self) -> bytes:
        """The whole unmasked frame (RFC 6455, 5.2), as a server sends it."""
        if self._wire is None:
            payload = self.encoded
            size = len(payload)
            if size < 126:
                header = struct.pack("!BB", _FIN_TEXT, size)
            elif size < 65_536:
                header = struct.pack("!BBH", _FIN_TEXT, 126, size)
            else:
                header = struct.pack("!BBQ", _FIN_TEXT, 127, size)
            self._wire = header + payload
        return self._wire


class DirectSocket(Protocol):
    def try_send(self, frame: PreparedFrame) -> bool: ...


def direct_socket(scope: Mapping[str, Any]) -> DirectSocket | None:
    """The direct write path of a WebSocket scope, when the server offers one."""
    extensions = scope.get("extensions") or {}
    direct = extensions.get(DIRECT_EXTENSION)
    return direct if hasattr(direct, "try_send") else None
