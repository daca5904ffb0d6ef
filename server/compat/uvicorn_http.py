"""uvicorn's HTTP/1.1 protocol (httptools), starting the task of a read as a read.

uvicorn makes a request's task in ``on_headers_complete``, in the context of the
connection's socket callback. This protocol sets ``server.loop.READ`` around that call for
``GET`` and ``HEAD``, so the task (a copy of that context) is a read from its first step;
the connection's own context is left as it was. A WebSocket's upgrade is not a read: its
socket serves the realtime gateway's writes too.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from server.loop import READ

# The methods of reads.
READ_METHODS = frozenset({b"GET", b"HEAD"})


class ReadsFirstHttp(HttpToolsProtocol):
    def on_headers_complete(self) -> None:
        read = self.parser.get_method() in READ_METHODS and not self.parser.should_upgrade()
        token = READ.set(read)
        try:
            super().on_headers_complete()
        finally:
            READ.reset(token)
