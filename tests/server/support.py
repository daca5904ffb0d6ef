"""What the server-core tests share: a demo city on any server, raw tokens, audit rows."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from server.audit import AuditRecord
from server.demo import DemoCity, seed_demo
from server.realtime.models import EventRecord
from tests.conftest import DEMO_PASSWORD
from tests.harness import RunningServer


async def small_city(server: RunningServer) -> DemoCity:
    """The conftest's small city, on a server made with custom settings or clock."""
    city, _summary = await seed_demo(server.ctx, password=DEMO_PASSWORD, communes=6, delegates=9)
    return city


def ed25519_pem() -> tuple[Ed25519PrivateKey, str]:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return key, pem


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unsigned_token(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """``header.claims.`` without a signature (what ``alg: none`` looks like)."""
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}."


async def audit_actions(server: RunningServer) -> list[tuple[str, str]]:
    async with server.ctx.read() as session:
        rows = await session.execute(
            select(AuditRecord.action, AuditRecord.subject).order_by(AuditRecord.seq)
        )
        return [(action, subject) for action, subject in rows]


async def event_count(server: RunningServer, topic: str | None = None) -> int:
    async with server.ctx.read() as session:
        query = select(func.count()).select_from(EventRecord)
        if topic is not None:
            query = query.where(EventRecord.topic == topic)
        return int((await session.execute(query)).scalar_one())


def metric(server: RunningServer, name: str) -> float:
    """The value of one unlabelled sample in the server's Prometheus text."""
    for line in server.ctx.metrics.render().decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


class RawSocket:
    """A WebSocket client on the sans-I/O protocol: it sees pings and can stop reading.

    Its kernel receive buffer can be made small, so a client that stops reading fills
    the server's buffers quickly, like a tablet on a dead network.
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, protocol: ClientProtocol
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.protocol = protocol
        self.pings = 0
        self.texts: list[str] = []
        self.close_code: int | None = None

    @classmethod
    async def connect(
        cls, ws_url: str, *, rcvbuf: int | None = None, origin: str | None = None
    ) -> RawSocket:
        uri = parse_uri(ws_url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (uri.host, uri.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=rcvbuf or 2**16)
        protocol = ClientProtocol(uri, max_size=None)
        request = protocol.connect()
        if origin is not None:
            request.headers["Origin"] = origin
        protocol.send_request(request)
        raw = cls(reader, writer, protocol)
        raw._flush()
        while protocol.handshake_exc is None and protocol.state is State.CONNECTING:
            await raw._pump()
        if protocol.handshake_exc is not None:
            raise protocol.handshake_exc
        return raw

    def _flush(self) -> None:
        for chunk in self.protocol.data_to_send():
            if chunk:
                self.writer.write(chunk)

    async def _pump(self, timeout: float = 5.0) -> bool:
        """Read once from the socket and handle what came; False at end of stream."""
        data = await asyncio.wait_for(self.reader.read(65536), timeout)
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        for event in self.protocol.events_received():
            if isinstance(event, Frame):
                if event.opcode is Opcode.PING:
                    self.pings += 1
                elif event.opcode is Opcode.TEXT:
                    self.texts.append(event.data.decode())
                elif event.opcode is Opcode.CLOSE and self.protocol.close_rcvd is not None:
                    self.close_code = self.protocol.close_rcvd.code
        self._flush()
        return bool(data)

    async def send(self, **fields: Any) -> None:
        self.protocol.send_text(json.dumps(fields).encode())
        self._flush()
        await self.writer.drain()

    async def next_text(self, timeout: float = 5.0) -> dict[str, Any]:
        while not self.texts:
            if not await self._pump(timeout):
                raise ConnectionError("the server closed the connection")
        message: dict[str, Any] = json.loads(self.texts.pop(0))
        return message

    async def read_until_closed(self, timeout: float = 10.0) -> None:
        """Read everything the server sends until the connection ends."""
        while self.close_code is None and await self._pump(timeout):
            pass

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
