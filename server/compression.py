"""Compression of text answers (brotli, else gzip) for tablets on a crowded hall Wi-Fi.

Only text types are compressed (HTML, CSS, JavaScript, JSON, SVG, plain text): PDFs,
page images and WOFF2 fonts are compressed already, and a compressed PDF would also break
byte ranges. WebSockets pass untouched. Answers below the size threshold go as they are:
the encoding's own framing would eat the gain. Every answer of a compressible type says
``Vary: Accept-Encoding``, compressed or not, so no cache hands gzip to a client that did
not ask for it.
"""

from __future__ import annotations

import zlib
from typing import Any, Protocol

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

try:
    import brotli
except ImportError:  # an optional speed-up: gzip serves every client
    brotli = None

COMPRESSIBLE_TYPES = frozenset(
    {
        "application/javascript",
        "application/json",
        "application/manifest+json",
        "application/problem+json",
        "application/xml",
        "image/svg+xml",
        "text/css",
        "text/csv",
        "text/html",
        "text/javascript",
        "text/plain",
        "text/xml",
    }
)
# gzip level 6 and brotli quality 5: most of the size gain at a fraction of the CPU of
# the highest settings, which matters when 95 tablets load the app at once.
GZIP_LEVEL = 6
BROTLI_QUALITY = 5


class _Compressor(Protocol):
    def compress(self, data: bytes) -> bytes: ...


class _Gzip:
    def __init__(self) -> None:
        self._z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)

    def compress(self, data: bytes) -> bytes:
        return self._z.compress(data)

    def finish(self) -> bytes:
        return self._z.flush()


class _Brotli:
    def __init__(self) -> None:
        assert brotli is not None
        self._b = brotli.Compressor(quality=BROTLI_QUALITY)

    def compress(self, data: bytes) -> bytes:
        return bytes(self._b.process(data))

    def finish(self) -> bytes:
        return bytes(self._b.finish())


def chosen_encoding(accept_encoding: str) -> str | None:
    """``br`` or ``gzip`` from an Accept-Encoding header, or None for neither."""
    weights: dict[str, float] = {}
    for part in accept_encoding.lower().split(","):
        token, _, params = part.strip().partition(";")
        weight = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[token.strip()] = weight
    star = weights.get("*", 0.0)
    if brotli is not None and weights.get("br", star) > 0:
        return "br"
    if weights.get("gzip", star) > 0:
        return "gzip"
    return None


def is_compressible(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() in COMPRESSIBLE_TYPES


class Compression:
    """ASGI middleware: compresses text answers of ``minimum_size`` bytes and more."""

    def __init__(self, app: ASGIApp, minimum_size: int) -> None:
        self.app = app
        self.minimum_size = minimum_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.minimum_size <= 0:
            await self.app(scope, receive, send)
            return
        encoding = chosen_encoding(Headers(scope=scope).get("accept-encoding", ""))
        is_head = scope.get("method") == "HEAD"
        start: Message | None = None
        compressor: Any = None
        passthrough = False

        async def send_compressed(message: Message) -> None:
            nonlocal start, compressor, passthrough
            if message["type"] == "http.response.start":
                headers = MutableHeaders(raw=list(message.get("headers", [])))
                if not is_compressible(headers.get("content-type", "")):
                    passthrough = True
                    await send(message)
                    return
                headers.add_vary_header("Accept-Encoding")
                message = {**message, "headers": headers.raw}
                if (
                    encoding is None
                    or is_head
                    or "content-encoding" in headers
                    or "content-range" in headers
                    or message["status"] < 200
                    or message["status"] in (204, 304)
                ):
                    passthrough = True
                    await send(message)
                    return
                length = headers.get("content-length")
                if length is not None and length.isdigit() and int(length) < self.minimum_size:
                    passthrough = True
                    await send(message)
                    return
                start = message
                return
            if message["type"] != "http.response.body" or passthrough:
                if start is not None and compressor is None:
                    # The server sends the file itself (the pathsend extension): as it is.
                    passthrough = True
                    await send(start)
                await send(message)
                return
            body: bytes = message.get("body", b"")
            more = bool(message.get("more_body", False))
            if start is not None and compressor is None:
                headers = MutableHeaders(raw=start["headers"])
                if not more and len(body) < self.minimum_size:
                    passthrough = True
                    await send(start)
                    await send(message)
                    return
                compressor = _Brotli() if encoding == "br" else _Gzip()
                headers["Content-Encoding"] = encoding or ""
                # Another representation of the same content: a weak validator.
                etag = headers.get("etag")
                if etag is not None and not etag.startswith("W/"):
                    headers["ETag"] = "W/" + etag
                if more:
                    del headers["Content-Length"]
                else:
                    body = compressor.compress(body) + compressor.finish()
                    headers["Content-Length"] = str(len(body))
                    await send({**start, "headers": headers.raw})
                    await send({"type": "http.response.body", "body": body})
                    return
                await send({**start, "headers": headers.raw})
            out = compressor.compress(body)
            if not more:
                out += compressor.finish()
            await send({"type": "http.response.body", "body": out, "more_body": more})

        await self.app(scope, receive, send_compressed)
