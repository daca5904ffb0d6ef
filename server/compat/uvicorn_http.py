"""uvicorn's HTTP/1.1 protocol (httptools), starting the task of a read as a read.

uvicorn makes a request's task in ``on_headers_complete``, in the context of the
connection's socket callback. This protocol sets ``server.loop.READ`` around that call for
``GET`` and ``HEAD``, so the task (a copy of that context) is a read from its first step;
the connection's own context is left as it was. A WebSocket's upgrade is not a read: its
socket serves the realtime gateway's writes too.

The connection's socket is watched as its last request was: after a read, what arrives
next on that keep-alive connection (most likely the same client's next read) is taken off
the socket ahead of the writes the loop had ready; after anything else, in the loop's
order. asyncio makes a socket's callback in the context it is watched from, so the socket
is watched again, from a context with ``READ`` set or not, when the kind of request changes.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from server.loop import READ

# The methods of reads.
READ_METHODS = frozenset({b"GET", b"HEAD"})


class ReadsFirstHttp(HttpToolsProtocol):
    # Whether the socket is watched as a read's (see above); a new connection's is not.
    socket_read = False

    def on_headers_complete(self) -> None:
        read = self.parser.get_method() in READ_METHODS and not self.parser.should_upgrade()
        if read is not self.socket_read:
            self._watch_socket(read=read)
        token = READ.set(read)
        try:
            super().on_headers_complete()
        finally:
            READ.reset(token)

    def _watch_socket(self, *, read: bool) -> None:
        transport = self.transport
        if self.flow.read_paused or transport.is_closing():
            # Not watched now: uvicorn watches it again when it may read on, from the
            # request's task, whose context is the request's kind.
            return
        self.socket_read = read
        transport.pause_reading()
        token = READ.set(read)
        try:
            transport.resume_reading()
        finally:
            READ.reset(token)
