"""Benchmark: one ``express`` directive to a whole city of online users, then everyone
reads and acknowledges it.

    python -m bench.directives [--users 3200] [--processes 4] [--ack-spread 3]
                               [--via socket|http] [--profile FILE] [--database-url URL]

A real server (``dienhong`` app under uvicorn, in its own process) on loopback over the
demo city (126 communes/wards) scaled with extra staff accounts so that ``--users``
recipients exist; one WebSocket per recipient, spread over client processes (each an
asyncio loop with many sockets). Every client answers ``received`` as soon as
``directive.issued`` reaches it, which is what the server records as *delivered*.

Figures printed:

* the issuing request's response time;
* time from that response until 50 %, 99 % and 100 % of recipients are recorded as
  delivered by the server (``delivered_at`` in the database), and the same seen by clients;
* baseline in the same run: the time until every socket has answered one ``ping`` sent to
  all at once — the floor any fan-out on this machine sits on;
* baseline in the same run: every user asking ``GET /api/v1/me`` at once, each on its own
  keep-alive connection (an authenticated request that writes nothing), in requests/s;
* four rounds of receipts, the way the chat client sends them (``--via socket``: the ops
  ``read`` and ``ack`` over the socket it holds, each answered on it; ``--via http``: the
  POST routes): every client reads, then acknowledges, spread over ``--ack-spread``
  seconds; then a second directive is issued and every client reads it, then acknowledges
  it, all at once. For each: answers per second, and when the sender's coalesced
  ``directive.receipts`` roll-up showed 100 %, from the round's start and after the last
  one was sent.

``--profile FILE`` runs the server under cProfile (CPU time) during the receipt rounds only.

Targets: issue 4, 99 % delivered within 1 s of the issuing request's response; issue 15,
receipts spread over 3 s all recorded and the roll-up at 100 % within 1 s of the last one
sent, and a burst of all at once within 3 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import websockets
from sqlalchemy import select

from bench.common import free_port, percentile, raise_open_files
from bench.voting import HttpConnection

PASSWORD = "bench-password-1"


# --- preparing the city -------------------------------------------------------------------
def settings_for(data_dir: Path, database_url: str) -> Any:
    from server.settings import Settings

    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        log_json=False,
        log_level="WARNING",
        serve_web_client=False,
        # One token bucket per user: the bench's clients send few frames.
        ws_rate_per_sec=50.0,
        # Connecting thousands of sockets on a busy machine can starve the
        # clients' pong replies; keep-alive is not what this bench measures.
        ws_ping_interval_secs=600.0,
        ws_ping_timeout_secs=600.0,
    )


async def prepare(
    data_dir: Path, database_url: str, users: int
) -> tuple[list[tuple[int, str]], str, int]:
    """Migrate, seed the demo city, add staff until ``users`` recipients exist, mint tokens."""
    from server.app import create_app
    from server.demo import seed_demo
    from server.migrate import migrate
    from server.org.models import Role, User

    settings = settings_for(data_dir, database_url)
    await migrate(settings)
    app = create_app(settings)
    ctx = app.state.ctx
    try:
        city, _ = await seed_demo(ctx, password=PASSWORD, communes=126, delegates=95)
        async with ctx.write() as w:
            session = w.session
            existing = (await session.execute(select(User))).scalars().all()
            shared_hash = next(u.password_hash for u in existing if u.username == "ward001")
            missing = users - (len(existing) - 1)  # every user but the sender receives
            for index in range(max(0, missing)):
                unit_id = city.commune_unit_ids[index % len(city.commune_unit_ids)]
                session.add(
                    User(
                        username=f"staff{index + 1:05d}",
                        display_name=f"Cán bộ {index + 1:05d}",
                        unit_id=unit_id,
                        roles=[Role.STAFF.value],
                        clearance="none",
                        is_unit_head=False,
                        password_hash=shared_hash,
                        active=True,
                        created_at=w.now,
                    )
                )
        async with ctx.read() as session:
            everyone = (
                (
                    await session.execute(
                        select(User.id).where(User.active.is_(True)).order_by(User.id)
                    )
                )
                .scalars()
                .all()
            )
        now = datetime.now(UTC)
        tokens = [
            (uid, ctx.tokens.issue(uid, now)[0]) for uid in everyone if uid != city.standing_id
        ]
        sender_token = ctx.tokens.issue(city.standing_id, now)[0]
        return tokens, sender_token, city.root_unit_id
    finally:
        await ctx.db.dispose()


def serve(data_dir: str, database_url: str, port: int, profile: str = "") -> None:
    """The server process; with ``profile``, SIGUSR1 starts cProfile and SIGUSR2 stops it
    and writes its statistics to that path (so a profile covers one phase only)."""
    import cProfile
    import signal

    import uvicorn

    from server.app import create_app
    from server.cli import uvicorn_options
    from server.logs import configure_logging

    raise_open_files()
    settings = settings_for(Path(data_dir), database_url)
    configure_logging(settings.log_level, as_json=False)
    options = uvicorn_options(settings) | {"log_level": "warning", "backlog": 4096}
    if profile:
        # CPU time, not wall time: on a shared machine waiting for a core is not cost.
        profiler = cProfile.Profile(time.process_time)
        signal.signal(signal.SIGUSR1, lambda *_: profiler.enable())

        def stop(*_: Any) -> None:
            profiler.disable()
            profiler.dump_stats(profile)

        signal.signal(signal.SIGUSR2, stop)
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, **options)  # type: ignore[arg-type]


# --- the client processes ------------------------------------------------------------------
async def _clients(
    pipe: Connection, ws_url: str, http_url: str, specs: list[tuple[int, str]]
) -> None:
    """One client process: its sockets and HTTP connections, driven by the parent's
    commands (``ping``, ``issued``, ``me``, ``("receipts", kind, spread, via)``, ``close``)."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(50)
    sockets: dict[int, Any] = {}

    async def connect(user_id: int, token: str) -> None:
        async with gate:
            ws = await websockets.connect(
                ws_url, max_size=None, ping_interval=None, open_timeout=120, close_timeout=2
            )
            await ws.send(json.dumps({"op": "auth", "token": token}))
            ready = json.loads(await ws.recv())
            if ready.get("op") != "ready":
                raise RuntimeError(f"no ready for {user_id}: {ready}")
            sockets[user_id] = ws

    await asyncio.gather(*(connect(uid, tok) for uid, tok in specs))
    pipe.send(("connected", len(sockets)))

    tokens = dict(specs)
    directive_ids: dict[int, int] = {}
    # Each user has its own keep-alive connection, as each clerk's browser does (a shared
    # client pool would queue the requests of a whole process behind a few connections).
    connections: dict[int, HttpConnection] = {}

    async def ping(ws: Any) -> None:
        await ws.send('{"op":"ping"}')
        while json.loads(await ws.recv()).get("op") != "pong":
            pass

    async def wait_directive(user_id: int, ws: Any, received: dict[int, float]) -> None:
        while True:
            message = json.loads(await ws.recv())
            if message.get("op") == "event" and message.get("type") == "directive.issued":
                received[user_id] = time.time()
                await ws.send(
                    json.dumps({"op": "received", "topic": message["topic"], "seq": message["seq"]})
                )
                directive_ids[user_id] = message["data"]["directive"]["id"]
                return

    async def open_connection(user_id: int) -> None:
        async with gate:
            connections[user_id] = await HttpConnection.open(http_url)

    async def call(user_id: int, method: str, path: str, body: dict[str, Any] | None = None) -> int:
        for _attempt in range(3):
            try:
                status, _ = await connections[user_id].request(method, path, tokens[user_id], body)
                return status
            except (ConnectionError, IndexError):
                # The server closed the idle keep-alive connection first (its keep-alive
                # timeout): open another and send again, as a browser does (acknowledging
                # twice changes nothing).
                connections[user_id].writer.close()
                connections[user_id] = await HttpConnection.open(http_url)
        return 0

    async def over_socket(user_id: int, kind: str) -> bool:
        """What the chat client does when connected: the op, answered on the socket."""
        ws = sockets[user_id]
        ref = f"{kind}-{directive_ids[user_id]}"
        await ws.send(json.dumps({"op": kind, "directive_id": directive_ids[user_id], "ref": ref}))
        while True:
            message = json.loads(await ws.recv())
            if message.get("ref") == ref:
                return bool(message.get("op") == "ok")

    async def receipts(kind: str, spread: float, via: str) -> tuple[int, int, float, float]:
        ok = errors = 0
        last_sent = last_answer = 0.0

        async def one(user_id: int) -> None:
            nonlocal ok, errors, last_sent, last_answer
            await asyncio.sleep(random.uniform(0, spread))
            last_sent = max(last_sent, time.time())
            if via == "socket":
                done = await over_socket(user_id, kind)
            else:
                done = (
                    await call(
                        user_id, "POST", f"/api/v1/directives/{directive_ids[user_id]}/{kind}", {}
                    )
                    == 200
                )
            if done:
                ok += 1
                last_answer = max(last_answer, time.time())
            else:
                errors += 1

        await asyncio.gather(*(one(uid) for uid in directive_ids))
        return ok, errors, last_sent, last_answer

    while True:
        command = await loop.run_in_executor(None, pipe.recv)
        if command == "ping":
            # Baseline: one ping on every socket at once, until every pong is back.
            started = time.monotonic()
            await asyncio.gather(*(ping(ws) for ws in sockets.values()))
            pipe.send(("pinged", time.monotonic() - started))
        elif command == "issued":
            received: dict[int, float] = {}
            await asyncio.wait_for(
                asyncio.gather(*(wait_directive(uid, ws, received) for uid, ws in sockets.items())),
                120,
            )
            pipe.send(("received", list(received.values())))
        elif command == "me":
            # Baseline in the same run: every user asks GET /api/v1/me at once (an
            # authenticated request that writes nothing), each on its own connection.
            await asyncio.gather(
                *(open_connection(uid) for uid in directive_ids if uid not in connections)
            )
            started = time.monotonic()
            answers = await asyncio.gather(
                *(call(uid, "GET", "/api/v1/me") for uid in directive_ids)
            )
            pipe.send(("me", sum(1 for code in answers if code == 200), time.monotonic() - started))
        elif isinstance(command, tuple) and command[0] == "receipts":
            _, kind, spread, via = command
            pipe.send(("receipts", *await receipts(kind, spread, via)))
        elif command == "close":
            for connection in connections.values():
                connection.writer.close()
            await asyncio.gather(*(ws.close() for ws in sockets.values()), return_exceptions=True)
            pipe.send(("closed",))
            return


def client_process(
    pipe: Connection, ws_url: str, http_url: str, specs: list[tuple[int, str]]
) -> None:
    raise_open_files()
    asyncio.run(_clients(pipe, ws_url, http_url, specs))


# --- the run --------------------------------------------------------------------------------
async def gather_from(pipes: list[Connection], label: str, timeout: float) -> list[Any]:
    loop = asyncio.get_running_loop()

    def recv(pipe: Connection) -> Any:
        if not pipe.poll(timeout):
            raise TimeoutError(f"a client process did not report {label!r} in {timeout}s")
        return pipe.recv()

    answers = await asyncio.gather(*(loop.run_in_executor(None, recv, p) for p in pipes))
    for answer in answers:
        if answer[0] != label:
            raise RuntimeError(f"expected {label}, got {answer}")
    return list(answers)


async def delivered_times(data_dir: Path, database_url: str, directive_id: int) -> list[datetime]:
    from messaging.models import DirectiveRecipient
    from server.db import Database

    db = Database(settings_for(data_dir, database_url))
    try:
        async with db.read_session() as session:
            rows = (
                (
                    await session.execute(
                        select(DirectiveRecipient.delivered_at).where(
                            DirectiveRecipient.directive_id == directive_id
                        )
                    )
                )
                .scalars()
                .all()
            )
        return [r for r in rows if r is not None]
    finally:
        await db.dispose()


async def run(args: argparse.Namespace) -> None:
    limit = raise_open_files()
    needed = args.users + 200
    if limit < needed:
        print(f"warning: open-files limit {limit} is below {needed}", file=sys.stderr)
    data_dir = Path(tempfile.mkdtemp(prefix="dienhong-bench-"))
    try:
        t = time.perf_counter()
        tokens, sender_token, root_unit = await prepare(data_dir, args.database_url, args.users)
        print(
            f"prepared {len(tokens)} recipients in {time.perf_counter() - t:.1f}s "
            f"(open-files limit {limit})"
        )
        port = free_port()
        ctx_mp = multiprocessing.get_context("spawn")
        server = ctx_mp.Process(
            target=serve, daemon=True, args=(str(data_dir), args.database_url, port, args.profile)
        )
        server.start()
        http_url = f"http://127.0.0.1:{port}"
        ws_url = f"ws://127.0.0.1:{port}/ws"
        for _ in range(600):
            try:
                async with httpx.AsyncClient() as probe:
                    if (await probe.get(f"{http_url}/healthz")).status_code == 200:
                        break
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
        else:
            raise RuntimeError("server did not start")
        await run_clients(
            args, tokens, sender_token, root_unit, http_url, ws_url, data_dir, server.pid
        )
        server.terminate()
        server.join(10)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@dataclass
class Round:
    """One round of reads or acknowledgements, as the clients and the sender saw it."""

    kind: str
    spread: float
    ok: int
    errors: int
    last_sent: float  # seconds after the round's start
    last_answer: float
    full: float  # the sender's roll-up at 100 %, seconds after the round's start
    updates: int

    def print(self, recipients: int) -> None:
        what = {"read": "reads", "ack": "acks"}[self.kind]
        how = f"spread over {self.spread:.0f} s" if self.spread else "all at once"
        print(
            f"  {what:>5} {how:<16} {self.ok}/{recipients} ok, {self.errors} failed; "
            f"answered over {self.last_answer * 1000:6.0f} ms = "
            f"{self.ok / self.last_answer:6.0f} {what}/s; roll-up 100 % after "
            f"{self.full * 1000:6.0f} ms = {(self.full - self.last_sent) * 1000:5.0f} ms "
            f"after the last sent ({self.updates} events)"
        )

    def met(self) -> bool:
        """Issue 15: spread over 3 s, all recorded and the roll-up at 100 % within 1 s of
        the last one sent; all at once, within 3 s."""
        if self.errors:
            return False
        return (self.full - self.last_sent <= 1.0) if self.spread else self.full <= 3.0


async def receipt_round(
    pipes: list[Connection], sender: Any, directive_id: int, kind: str, spread: float, via: str
) -> Round:
    field = {"read": "read", "ack": "acknowledged"}[kind]
    for pipe in pipes:
        pipe.send(("receipts", kind, spread, via))
    started = time.time()
    full_at = None
    updates = 0
    while full_at is None:
        message = json.loads(await asyncio.wait_for(sender.recv(), 300))
        if (
            message.get("op") == "event"
            and message["type"] == "directive.receipts"
            and message["data"]["directive_id"] == directive_id
        ):
            updates += 1
            summary = message["data"]["summary"]
            if summary[field] >= summary["recipients"]:
                full_at = time.time()
    answers = await gather_from(pipes, "receipts", 300)
    return Round(
        kind,
        spread,
        sum(a[1] for a in answers),
        sum(a[2] for a in answers),
        max(a[3] for a in answers) - started,
        max(a[4] for a in answers) - started,
        full_at - started,
        updates,
    )


async def issue(
    http_url: str, sender_token: str, root_unit: int, pipes: list[Connection]
) -> tuple[dict[str, Any], float, float, list[float]]:
    """Issue one express directive to everyone; wait until every client holds it."""
    body = {
        "title": "Hỏa tốc: triển khai phương án phòng chống bão",
        "body": "Yêu cầu các đơn vị triển khai ngay phương án sơ tán dân. " * 5,
        "urgency": "express",
        "targets": {"unit_ids": [root_unit], "include_descendants": True},
        "ack_required": True,
    }
    for pipe in pipes:
        pipe.send("issued")
    async with httpx.AsyncClient(base_url=http_url, timeout=120) as http:
        requested = time.time()
        response = await http.post(
            "/api/v1/directives", json=body, headers={"Authorization": f"Bearer {sender_token}"}
        )
        answered = time.time()
    response.raise_for_status()
    received = [s for a in await gather_from(pipes, "received", 180) for s in a[1]]
    return response.json(), requested, answered, received


async def run_clients(
    args: argparse.Namespace,
    tokens: list[tuple[int, str]],
    sender_token: str,
    root_unit: int,
    http_url: str,
    ws_url: str,
    data_dir: Path,
    server_pid: int | None,
) -> None:
    ctx_mp = multiprocessing.get_context("spawn")
    parts = [tokens[i :: args.processes] for i in range(args.processes)]
    pipes: list[Connection] = []
    procs = []
    for part in parts:
        ours, theirs = ctx_mp.Pipe()
        proc = ctx_mp.Process(
            target=client_process, args=(theirs, ws_url, http_url, part), daemon=True
        )
        proc.start()
        pipes.append(ours)
        procs.append(proc)
    t = time.perf_counter()
    connected = sum(a[1] for a in await gather_from(pipes, "connected", 600))
    print(
        f"connected {connected} sockets in {time.perf_counter() - t:.1f}s "
        f"over {args.processes} client processes"
    )

    for pipe in pipes:
        pipe.send("ping")
    baseline = max(a[1] for a in await gather_from(pipes, "pinged", 120))

    async with websockets.connect(ws_url, max_size=None) as sender:
        await sender.send(json.dumps({"op": "auth", "token": sender_token}))
        json.loads(await sender.recv())
        issued, requested, answered, received = await issue(
            http_url, sender_token, root_unit, pipes
        )
        directive_id = issued["id"]
        # The server records delivery in batches: wait until it has all of them.
        deadline = time.time() + 60
        stamps: list[datetime] = []
        while time.time() < deadline:
            stamps = await delivered_times(data_dir, args.database_url, directive_id)
            if len(stamps) >= issued["recipient_count"]:
                break
            await asyncio.sleep(0.2)
        delivered = [s.timestamp() - answered for s in stamps]
        seen = [s - answered for s in received]
        recipients = issued["recipient_count"]
        print()
        print(
            f"recipients {recipients} (left out {len(issued['left_out'])}), "
            f"sockets {connected}, client processes {args.processes}"
        )
        print(f"baseline: ping round trip on every socket at once  {baseline * 1000:8.0f} ms")
        print(
            f"issue request (POST /directives) response time     "
            f"{(answered - requested) * 1000:8.0f} ms"
        )
        print("after the response, delivered as recorded by the server:")
        for label, fraction in (("50%", 0.5), ("99%", 0.99), ("100%", 1.0)):
            print(
                f"  {label:>5}: {percentile(delivered, fraction) * 1000:8.0f} ms   "
                f"(clients saw it at {percentile(seen, fraction) * 1000:6.0f} ms)"
            )
        print(
            f"  recorded {len(delivered)}/{recipients}; median client latency "
            f"{statistics.median(seen) * 1000:.0f} ms",
            flush=True,
        )

        for pipe in pipes:
            pipe.send("me")
        me = await gather_from(pipes, "me", 300)
        me_ok = sum(b[1] for b in me)
        me_secs = max(b[2] for b in me)

        if args.profile and server_pid:
            os.kill(server_pid, signal.SIGUSR1)
        rounds: list[Round] = []
        # First spread over --ack-spread seconds, then a fresh directive all at once.
        for spread in (args.ack_spread, 0.0):
            if rounds:
                issued = (await issue(http_url, sender_token, root_unit, pipes))[0]
            for kind in ("read", "ack"):
                rounds.append(
                    await receipt_round(pipes, sender, issued["id"], kind, spread, args.via)
                )
        if args.profile and server_pid:
            os.kill(server_pid, signal.SIGUSR2)

    print(f"reads and acknowledgements over {args.via}:")
    print(
        f"  baseline GET /api/v1/me, all {me_ok} at once: {me_secs * 1000:8.0f} ms "
        f"= {me_ok / me_secs:7.0f} requests/s"
    )
    for round_ in rounds:
        round_.print(recipients)
    target = percentile(delivered, 0.99) <= 1.0
    print(f"target 99% delivered within 1 s of the response: {'met' if target else 'MISSED'}")
    met = all(r.met() for r in rounds)
    print(
        "target all recorded, roll-up at 100% within 1 s of the last one sent (spread) "
        f"and within 3 s (all at once): {'met' if met else 'MISSED'}"
    )

    for pipe in pipes:
        pipe.send("close")
    await gather_from(pipes, "closed", 60)
    for proc in procs:
        proc.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=3200, help="online recipients")
    parser.add_argument("--processes", type=int, default=4, help="client processes")
    parser.add_argument(
        "--ack-spread",
        type=float,
        default=3.0,
        help="seconds over which clients read, then acknowledge",
    )
    parser.add_argument(
        "--via",
        choices=("socket", "http"),
        default="socket",
        help="how clients read and acknowledge: over their socket, as the "
        "chat client does when connected, or over HTTP",
    )
    parser.add_argument(
        "--profile", default="", help="write a cProfile of the server's acknowledgement phase here"
    )
    parser.add_argument("--database-url", default="", help="empty: SQLite in a temporary directory")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
