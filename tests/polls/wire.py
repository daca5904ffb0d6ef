"""A tablet's HTTP/1.1 connection on a raw asyncio stream, for many tablets at once.

httpx's connection pool scans every connection on every request (quadratic with 500
connections) and each client loads the CA bundle; a council of tablets is 500 separate
keep-alive connections, which is what this is: one socket per tablet, one request at a
time, JSON in and out.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit


class Tablet:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, token: str
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.token = token

    base_url = ""

    @classmethod
    async def connect(cls, base_url: str, token: str) -> Tablet:
        parts = urlsplit(base_url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        tablet = cls(reader, writer, token)
        tablet.base_url = base_url
        return tablet

    async def request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        payload = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {self.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        self.writer.write(head.encode() + payload)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            # The server closed the idle keep-alive connection first (its keep-alive
            # timeout): reconnect and send again, as a tablet's HTTP stack does.
            await self.close()
            fresh = await Tablet.connect(self.base_url, self.token)
            self.reader, self.writer = fresh.reader, fresh.writer
            return await self.request(method, path, body)
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        data = await self.reader.readexactly(length) if length else b""
        return status, json.loads(data) if data else None

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass
