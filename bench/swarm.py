"""A swarm of WebSocket clients spread over several client processes, for benchmarks.

Each client process runs one asyncio loop (uvloop when installed) with many sans-I/O
``websockets`` client protocols: no task per client, so the clients themselves add as
little latency as possible and a measurement is mostly the server's. A client connects
(loopback only), sends ``{"op": "auth", "token"}``, waits for ``ready``, optionally sends
``subscribe`` and waits for every ``subscribed``, then records the monotonic time at which
each ``event`` frame carrying ``data.round`` first reached it. ``time.monotonic()`` is
``CLOCK_MONOTONIC``, shared by every process on the machine, so the parent can subtract
its own publish time.

    swarm = Swarm("ws://127.0.0.1:8000/ws", processes=4)
    await swarm.connect([ClientSpec(key=user_id, token=token), ...])
    ...publish round 1...
    stamps = await swarm.collect(1, timeout=30)   # {key: monotonic time or None}
    await swarm.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlsplit

from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from bench.common import raise_open_files

# Handshakes in flight per client process (the server's accept backlog is the limit).
CONNECT_CONCURRENCY = 100
# Largest frame a client accepts.
CLIENT_MAX_FRAME = 4 * 1024 * 1024


@dataclass(frozen=True)
class ClientSpec:
    """One client: a key to report it by, its token, and topics to subscribe to after ready."""

    key: int
    token: str
    subscribe: dict[str, int] | None = None


class SwarmError(RuntimeError):
    pass


# --- the client process --------------------------------------------------------------


class _Client(asyncio.Protocol):
    """One sans-I/O WebSocket client on a raw transport."""

    def __init__(self, owner: _Worker, spec: ClientSpec, deflate: bool) -> None:
        self.owner = owner
        self.spec = spec
        extensions = [ClientPerMessageDeflateFactory()] if deflate else None
        self.proto = ClientProtocol(
            parse_uri(owner.url), extensions=extensions, max_size=CLIENT_MAX_FRAME
        )
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = self.loop.create_future()
        self.ready: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        self.pending_subscribed: set[str] = set()
        self.subscribed: asyncio.Future[None] = self.loop.create_future()
        self.live = False
        self.stamps: dict[int, float] = {}
        self.closed_code: int | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.proto.send_request(self.proto.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.proto.receive_data(data)
        for event in self.proto.events_received():
            if isinstance(event, Response):
                if self.proto.handshake_exc is not None:
                    self._fail(self.proto.handshake_exc)
                elif not self.opened.done():
                    self.opened.set_result(None)
            elif isinstance(event, Frame):
                if event.opcode is Opcode.TEXT:
                    self._on_text(bytes(event.data), now)
                elif event.opcode is Opcode.CLOSE:
                    self.closed_code = self.proto.close_rcvd.code if self.proto.close_rcvd else 1005
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.live = False
        self._fail(exc or SwarmError(f"closed ({self.closed_code})"))
        self.owner.lost(self)

    # frames
    def _on_text(self, raw: bytes, now: float) -> None:
        message = json.loads(raw)
        op = message.get("op")
        if op == "event":
            data = message.get("data")
            round_id = data.get("round") if isinstance(data, dict) else None
            if round_id is None and isinstance(data, dict):
                # A directive's round is inside the directive it carries.
                inner = data.get("directive")
                round_id = inner.get("round") if isinstance(inner, dict) else None
            if isinstance(round_id, int) and round_id not in self.stamps:
                self.stamps[round_id] = now
                self.owner.arrived(round_id)
        elif op == "ready" and not self.ready.done():
            self.ready.set_result(message)
        elif op == "subscribed":
            self.pending_subscribed.discard(message.get("topic"))
            if not self.pending_subscribed and not self.subscribed.done():
                self.subscribed.set_result(None)
        elif op == "error" and not self.subscribed.done():
            self.subscribed.set_exception(SwarmError(f"refused: {message}"))

    def send_text(self, text: str) -> None:
        self.proto.send_text(text.encode())
        self._flush()

    def close(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        with contextlib.suppress(Exception):
            self.proto.send_close(1000)
            self._flush()
        self.transport.close()

    def _flush(self) -> None:
        if self.transport is None:
            return
        for chunk in self.proto.data_to_send():
            if chunk:
                self.transport.write(chunk)
            elif self.transport.can_write_eof():
                self.transport.write_eof()

    def _fail(self, exc: BaseException) -> None:
        for future in (self.opened, self.ready, self.subscribed):
            if not future.done():
                future.set_exception(exc)
                future.exception()  # mark retrieved


class _Worker:
    """The loop of one client process: obeys commands from the parent over a pipe."""

    def __init__(self, pipe: Connection, url: str, deflate: bool, local_host: str) -> None:
        self.pipe = pipe
        self.url = url
        self.deflate = deflate
        self.local_host = local_host
        self.clients: list[_Client] = []
        self.counts: dict[int, int] = {}
        # Per round being collected: its waiter and how many arrivals complete it. The
        # target is counted once per round, not per arrival: a count per arrival would
        # make each event cost the client process O(clients), and only while a collect
        # waits - so a server whose trigger returns early would be charged for it.
        self.waiting: dict[int, tuple[asyncio.Event, int]] = {}

    def arrived(self, round_id: int) -> None:
        count = self.counts.get(round_id, 0) + 1
        self.counts[round_id] = count
        waiting = self.waiting.get(round_id)
        if waiting is not None and count >= waiting[1]:
            waiting[0].set()

    def lost(self, client: _Client) -> None:
        live = self._live_count()
        for round_id, (waiter, _) in list(self.waiting.items()):
            self.waiting[round_id] = (waiter, live)
            if self.counts.get(round_id, 0) >= live:
                waiter.set()

    def _live_count(self) -> int:
        return sum(1 for c in self.clients if c.live)

    async def run(self) -> None:
        while True:
            # A blocking read in a thread: the pipe must stay blocking, or a large command
            # (thousands of tokens) is read in pieces and the stream breaks.
            command = await asyncio.to_thread(self.pipe.recv)
            name = command[0]
            if name == "connect":
                self.pipe.send(await self._connect(command[1]))
            elif name == "collect":
                self.pipe.send(await self._collect(command[1], command[2]))
            elif name == "count":
                self.pipe.send(self._live_count())
            elif name == "close":
                await self._close()
                self.pipe.send("closed")
                return

    async def _connect(self, specs: Sequence[ClientSpec]) -> tuple[int, list[str], float]:
        started = time.monotonic()
        limit = asyncio.Semaphore(CONNECT_CONCURRENCY)
        parts = urlsplit(self.url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        loop = asyncio.get_running_loop()
        errors: list[str] = []

        async def one(spec: ClientSpec) -> None:
            async with limit:
                client = _Client(self, spec, self.deflate)
                try:
                    await loop.create_connection(
                        lambda: client, host, port, local_addr=(self.local_host, 0)
                    )
                    await asyncio.wait_for(client.opened, 60)
                    client.send_text(json.dumps({"op": "auth", "token": spec.token}))
                    await asyncio.wait_for(client.ready, 60)
                    if spec.subscribe:
                        client.pending_subscribed = set(spec.subscribe)
                        client.send_text(json.dumps({"op": "subscribe", "topics": spec.subscribe}))
                        await asyncio.wait_for(client.subscribed, 60)
                    client.live = True
                    self.clients.append(client)
                except (OSError, TimeoutError, SwarmError, Exception) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    client.close()

        await asyncio.gather(*(one(spec) for spec in specs))
        ok = len(specs) - len(errors)
        return ok, errors[:5], time.monotonic() - started

    async def _collect(self, round_id: int, timeout: float) -> list[tuple[int, float | None]]:
        live = self._live_count()
        if self.counts.get(round_id, 0) < live:
            waiter = asyncio.Event()
            self.waiting[round_id] = (waiter, live)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), timeout)
            self.waiting.pop(round_id, None)
        # Clients the server closed since (1011 after a failed catch-up, 4408) are not
        # counted: they would resume from the log, which is not what is measured here.
        return [
            (c.spec.key, c.stamps.get(round_id))
            for c in self.clients
            if c.live or round_id in c.stamps
        ]

    async def _close(self) -> None:
        for client in self.clients:
            client.close()
        await asyncio.sleep(0.2)


def _worker_main(pipe: Connection, url: str, deflate: bool, local_host: str) -> None:
    raise_open_files()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_Worker(pipe, url, deflate, local_host).run())


# --- the parent side ---------------------------------------------------------------


class Swarm:
    """Client processes that hold the sockets; the parent only sends commands."""

    def __init__(self, url: str, *, processes: int = 4, deflate: bool = True) -> None:
        if urlsplit(url).hostname not in ("127.0.0.1", "localhost"):
            raise SwarmError("benchmarks stay on loopback")
        self.url = url
        context = multiprocessing.get_context("spawn")
        self._pipes: list[Connection] = []
        self._procs: list[Any] = []
        for index in range(processes):
            parent_end, child_end = context.Pipe()
            # Spread source addresses over 127.0.0.x so thousands of sockets never
            # exhaust one address's ephemeral ports.
            local_host = f"127.0.0.{1 + index % 8}"
            proc = context.Process(
                target=_worker_main, args=(child_end, url, deflate, local_host), daemon=True
            )
            proc.start()
            child_end.close()
            self._pipes.append(parent_end)
            self._procs.append(proc)

    async def _ask_all(self, commands: Sequence[Any]) -> list[Any]:
        for pipe, command in zip(self._pipes, commands, strict=True):
            pipe.send(command)
        return await asyncio.gather(*(asyncio.to_thread(pipe.recv) for pipe in self._pipes))

    async def connect(
        self, specs: Sequence[ClientSpec], *, in_turn: bool = False
    ) -> tuple[int, list[str], float]:
        """Connect every client, each process a contiguous share of ``specs``; returns
        (ok, errors, secs).

        ``in_turn``: the processes connect their shares one after the other, so every
        server sees the sockets of one process together, whatever its connect speed. A
        server orders its sockets as they connect; when all processes connect at once,
        a slower server interleaves them finely and each write then wakes another client
        process - client work that lands on the same cores as the server under test.
        """
        count = len(self._pipes)
        size = -(-len(specs) // count)
        shares = [list(specs[i * size : (i + 1) * size]) for i in range(count)]
        started = time.monotonic()
        if in_turn:
            answers = []
            for pipe, share in zip(self._pipes, shares, strict=True):
                pipe.send(("connect", share))
                answers.append(await asyncio.to_thread(pipe.recv))
        else:
            answers = await self._ask_all([("connect", share) for share in shares])
        ok = sum(a[0] for a in answers)
        errors = [e for a in answers for e in a[1]]
        return ok, errors, time.monotonic() - started

    async def live(self) -> int:
        return sum(await self._ask_all([("count",)] * len(self._pipes)))

    async def collect(self, round_id: int, timeout: float) -> dict[int, float | None]:
        """Wait (up to ``timeout``) until every live client got the round; their stamps."""
        answers = await self._ask_all([("collect", round_id, timeout)] * len(self._pipes))
        return {key: stamp for answer in answers for key, stamp in answer}

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._ask_all([("close",)] * len(self._pipes)), 30)
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
