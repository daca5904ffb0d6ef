"""Write-path benchmark: message posts into distinct channels, next to reads in the same run.

What it does, all on loopback, and stops by itself:

1. A fresh data dir (and, with ``--database-url``, a fresh PostgreSQL database of its own,
   dropped at the end): the demo city with its 126 communes/wards, each ward clerk
   (``ward001``…) in the unit channel of their own ward. Tokens are minted offline.
2. ``--nodes`` server processes (``dienhong serve``) over that database; with two or more
   they share Redis as their broker and the posters are split evenly between them. With
   ``--workers N`` each is ``dienhong serve --workers N`` (N worker processes on its port,
   Redis between them too).
3. For 1, 8 and 64 posters (``--posters``), a closed loop: each poster is one ward clerk
   on one keep-alive HTTP connection, posting a chat-sized message into their own unit
   channel and the next as soon as the answer comes. Figures: posts/s, p50/p99 latency.
4. Baseline in the same run: ``GET /api/v1/me`` (authenticated, writes nothing) in a
   closed loop by 64 clients: what the node answers when nothing is written.
5. One client reading ``GET /api/v1/channels/{id}/messages?limit=1`` in a loop: p50/p99
   idle, then while the 64 posters saturate the node(s). The reader is a process of its
   own, as a reader is another device: in the posters' process its own event loop, busy
   with 64 closed loops, would be part of every figure. Beside it, at the same time, a
   second process asks for a path the node does not have (``FLOOR_PATH``: the same
   middleware and router, answered 404 with no token check, no database, no broker): the
   floor, what the node's event loop allows any request, idle and under the same load.
6. On PostgreSQL, sampled at 10 Hz during each run, about the write lock (the advisory
   reader-writer lock of ``server.db``): the fraction of samples in which it is held
   exclusively (a write that runs alone), held shared (partitioned writes, such as these
   posts), and held shared by two or more backends at once (partitioned writes running
   side by side), the most shared holders seen; the fraction in which some backend waits
   for a lock (``pg_locks`` not granted); and in which a holder sits ``idle in
   transaction`` (waiting for its node's next statement).

    python -m bench.writes [--seconds 10] [--posters 1,8,64] [--nodes 1] [--workers 1]
                           [--database-url postgresql+asyncpg://postgres@127.0.0.1:5432/test]
                           [--redis-url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from bench.common import free_port, percentile, raise_open_files, start_server, wait_healthy
from bench.voting import HttpConnection

PASSWORD = "bench-password-1"
# A chat message of ordinary length, in Vietnamese like the real ones.
BODY = (
    "Phường đã hoàn thành rà soát hộ dân vùng trũng, 12 hộ đã di dời an toàn; "
    "đề nghị hỗ trợ thêm áo phao và đèn pin cho tổ xung kích."
)
WARMUP_SECS = 1.0
# What the two probes print: the read, and the floor beside it.
PROBE_LABELS = ("read GET …/messages?limit=1", "floor GET of no route (404)")
# The floor's request: through the whole stack, touching nothing (``/healthz`` would ask
# the database and the broker).
FLOOR_PATH = "/api/v1/no-such-route"
# Probe reads this often at most, so the probe itself is not a load.
READ_PROBE_GAP_SECS = 0.01
SAMPLE_INTERVAL_SECS = 0.1


@dataclass
class Clerk:
    user_id: int
    channel_id: int
    token: str


@dataclass
class LoopResult:
    done: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    def p(self, fraction: float) -> float:
        return percentile(self.latencies, fraction) * 1000


@dataclass
class LockShare:
    samples: int = 0
    # Samples in which the write lock was held at all, exclusively, shared, shared by 2+.
    held: int = 0
    exclusive: int = 0
    shared: int = 0
    overlapped: int = 0
    most_shared: int = 0
    waited: int = 0
    holder_idle: int = 0

    def add(self, exclusive: int, shared: int, waited: bool, idle: bool) -> None:
        self.samples += 1
        self.held += bool(exclusive or shared)
        self.exclusive += bool(exclusive)
        self.shared += bool(shared)
        self.overlapped += shared >= 2
        self.most_shared = max(self.most_shared, shared)
        self.waited += waited
        self.holder_idle += idle

    def describe(self) -> str:
        if not self.samples:
            return ""

        def pct(count: int) -> str:
            return f"{100 * count / self.samples:.0f} %"

        return (
            f"lock exclusive {pct(self.exclusive)}, shared {pct(self.shared)} "
            f"(by 2+ at once {pct(self.overlapped)}, most {self.most_shared}), "
            f"waited for {pct(self.waited)}, "
            f"a holder idle in transaction {100 * self.holder_idle / max(1, self.held):.0f} %"
            f" of held"
        )


# --- the database ----------------------------------------------------------------------
async def _pg_admin(url: str, statement: str) -> None:
    import asyncpg

    parsed = make_url(url)
    conn = await asyncpg.connect(
        host=parsed.host,
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        database=parsed.database or "postgres",
    )
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def fresh_pg_database(url: str) -> str:
    """A database of the bench's own on the server of ``url``."""
    name = f"dh_bench_writes_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    await _pg_admin(url, f'CREATE DATABASE "{name}"')
    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def drop_pg_database(admin_url: str, url: str) -> None:
    await _pg_admin(admin_url, f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


async def prepare(data_dir: Path, database_url: str) -> list[Clerk]:
    """Migrate, seed the demo city, create the unit channels, mint the clerks' tokens."""
    from sqlalchemy import select

    from messaging.channels import ensure_unit_channels
    from messaging.models import Channel
    from server.app import create_app
    from server.demo import seed_demo
    from server.migrate import migrate
    from server.org.models import User
    from server.settings import Settings

    settings = Settings(
        data_dir=data_dir, database_url=database_url, log_json=False, log_level="WARNING"
    )
    await migrate(settings)
    ctx = create_app(settings).state.ctx
    try:
        city, _ = await seed_demo(ctx, password=PASSWORD, communes=126, delegates=10)
        await ensure_unit_channels(ctx)
        async with ctx.read() as session:
            rows = (
                await session.execute(
                    select(User.id, Channel.id)
                    .join(Channel, Channel.unit_id == User.unit_id)
                    .where(User.id.in_(city.ward_user_ids))
                    .order_by(User.id)
                )
            ).all()
        now = datetime.now(UTC)
        return [Clerk(int(uid), int(cid), ctx.tokens.issue(int(uid), now)[0]) for uid, cid in rows]
    finally:
        await ctx.db.dispose()


class LockSampler:
    """Samples PostgreSQL's locks at 10 Hz while a run lasts (PostgreSQL only)."""

    def __init__(self, database_url: str) -> None:
        from server.db import PG_WRITE_LOCK_KEY

        self.url = database_url
        self.key = PG_WRITE_LOCK_KEY
        self.share = LockShare()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        import asyncpg

        parsed = make_url(self.url)
        conn = await asyncpg.connect(
            host=parsed.host,
            port=parsed.port or 5432,
            user=parsed.username,
            password=parsed.password,
            database=parsed.database,
        )
        classid, objid = (self.key >> 32) & 0xFFFFFFFF, self.key & 0xFFFFFFFF
        # The lock's holders by mode (ExclusiveLock: a write alone; ShareLock: partitioned
        # writes, any number at once), whether any lock is waited for, and whether a
        # holder of the write lock is idle in its transaction.
        query = """
            WITH holders AS (
              SELECT l.mode, a.state FROM pg_locks l
              LEFT JOIN pg_stat_activity a ON a.pid = l.pid
              WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1
                AND l.objid = $2 AND l.database = (
                  SELECT oid FROM pg_database WHERE datname = current_database()))
            SELECT
              (SELECT count(*) FROM holders WHERE mode = 'ExclusiveLock'),
              (SELECT count(*) FROM holders WHERE mode = 'ShareLock'),
              EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted AND database = (
                SELECT oid FROM pg_database WHERE datname = current_database())),
              EXISTS (SELECT 1 FROM holders WHERE state = 'idle in transaction')"""
        try:
            while True:
                exclusive, shared, waited, idle = await conn.fetchrow(query, classid, objid)
                self.share.add(int(exclusive), int(shared), bool(waited), bool(idle))
                await asyncio.sleep(SAMPLE_INTERVAL_SECS)
        finally:
            await conn.close()

    def start(self) -> None:
        self.share = LockShare()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> LockShare:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return self.share


# --- the loops ---------------------------------------------------------------------------
async def closed_loop(
    clients: int,
    seconds: float,
    one: Callable[[int, HttpConnection], Awaitable[bool]],
    base_of: Callable[[int], str],
) -> LoopResult:
    """``clients`` closed loops of ``one`` for a warm-up then ``seconds``; counts what ends
    inside the measured window."""
    result = LoopResult(seconds=seconds)
    conns = [await HttpConnection.open(base_of(i)) for i in range(clients)]
    start = time.perf_counter() + WARMUP_SECS
    end = start + seconds

    async def loop(index: int) -> None:
        conn = conns[index]
        while (began := time.perf_counter()) < end:
            ok = await one(index, conn)
            finished = time.perf_counter()
            if began >= start and finished <= end:
                if ok:
                    result.done += 1
                    result.latencies.append(finished - began)
                else:
                    result.errors += 1

    try:
        await asyncio.gather(*(loop(i) for i in range(clients)))
    finally:
        for conn in conns:
            conn.writer.close()
    return result


def poster(clerks: list[Clerk]) -> Callable[[int, HttpConnection], Awaitable[bool]]:
    counter = [0]

    async def post(index: int, conn: HttpConnection) -> bool:
        clerk = clerks[index % len(clerks)]
        counter[0] += 1
        status, _ = await conn.request(
            "POST",
            f"/api/v1/channels/{clerk.channel_id}/messages",
            clerk.token,
            {"body": f"{BODY} #{counter[0]}", "client_msg_id": uuid.uuid4().hex},
        )
        return status == 201

    return post


def asker(clerks: list[Clerk]) -> Callable[[int, HttpConnection], Awaitable[bool]]:
    async def me(index: int, conn: HttpConnection) -> bool:
        status, _ = await conn.request("GET", "/api/v1/me", clerks[index % len(clerks)].token)
        return status == 200

    return me


async def read_probe(base: str, path: str, token: str) -> list[float]:
    """One client asking for ``path`` (the newest message of a channel, or the floor's
    path) until its stdin closes; only the answers expected are counted."""
    expect = 404 if path == FLOOR_PATH else 200
    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.buffer.read)
    conn = await HttpConnection.open(base)
    latencies: list[float] = []
    try:
        while not stdin_closed.done():
            began = time.perf_counter()
            status, _ = await conn.request("GET", path, token)
            if status == expect:
                latencies.append(time.perf_counter() - began)
            await asyncio.sleep(READ_PROBE_GAP_SECS)
    finally:
        conn.writer.close()
    return latencies


class ReadProbe:
    """``read_probe`` in a process of its own (``python -m bench.writes --probe``)."""

    def __init__(self, base: str, clerk: Clerk, path: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.writes", "--probe", base, path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "BENCH_PROBE_TOKEN": clerk.token},
        )

    async def stop(self) -> list[float]:
        """Ends the probe; the latencies it measured, in seconds."""
        # ``communicate`` closes the probe's stdin, which is what ends it.
        out, _ = await asyncio.to_thread(self.proc.communicate, timeout=30)
        if self.proc.returncode != 0:
            raise RuntimeError(f"the read probe failed ({self.proc.returncode})")
        latencies: list[float] = json.loads(out)
        return latencies


def ms(values: list[float], fraction: float) -> float:
    return percentile(values, fraction) * 1000


# --- the run -----------------------------------------------------------------------------
async def wait_workers(base: str, workers: int) -> None:
    """Until every worker of the server on ``base`` has answered (at most 60 s): each
    request on a connection of its own, so the port hands it to any of them."""
    import httpx

    nodes: set[str] = set()
    deadline = time.monotonic() + 60
    while len(nodes) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(nodes)} of {workers} workers answered on {base}")
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            text = (await client.get("/metrics")).text
        for line in text.splitlines():
            if line.startswith('dienhong_node_info{node="'):
                nodes.add(line.split('"')[1])
        await asyncio.sleep(0.05)


async def run(args: argparse.Namespace) -> None:
    raise_open_files()
    data_dir = Path(tempfile.mkdtemp(prefix="dienhong-bench-writes-"))
    admin_url = args.database_url
    database_url = await fresh_pg_database(admin_url) if admin_url else ""
    servers: list[subprocess.Popen[bytes]] = []
    try:
        t = time.perf_counter()
        clerks = await prepare(data_dir, database_url)
        print(f"prepared {len(clerks)} ward clerks in {time.perf_counter() - t:.1f}s")
        env = {"DIENHONG_DATABASE_URL": database_url} if database_url else {}
        if args.nodes > 1 and not database_url:
            raise SystemExit("--nodes above 1 needs --database-url (PostgreSQL)")
        if args.workers > 1:
            env["DIENHONG_WORKERS"] = str(args.workers)
        if args.nodes > 1 or args.workers > 1:
            env["DIENHONG_REDIS_URL"] = args.redis_url
            env["DIENHONG_REDIS_CHANNEL"] = f"dienhong:bench-writes:{uuid.uuid4().hex[:8]}"
        bases = []
        for _ in range(args.nodes):
            port = free_port()
            proc = start_server(data_dir, port, **env)
            servers.append(proc)
            bases.append(f"http://127.0.0.1:{port}")
        for base, proc in zip(bases, servers, strict=True):
            await wait_healthy(base, proc)
            await wait_workers(base, args.workers)
        await measure(args, clerks, bases, database_url)
    finally:
        for proc in servers:
            proc.send_signal(signal.SIGINT)
        for proc in servers:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if database_url:
            await drop_pg_database(admin_url, database_url)
        shutil.rmtree(data_dir, ignore_errors=True)


async def measure(
    args: argparse.Namespace, clerks: list[Clerk], bases: list[str], database_url: str
) -> None:
    def base_of(index: int) -> str:
        return bases[index % len(bases)]

    sampler = LockSampler(database_url) if database_url else None
    backend = "PostgreSQL" if database_url else "SQLite"
    print(
        f"{len(bases)} node(s) of {args.workers} worker(s), {backend}, "
        f"{args.seconds:.0f} s per run, "
        f"load average {os.getloadavg()[0]:.2f} at start, {os.cpu_count()} CPU"
    )

    me = await closed_loop(64, args.seconds, asker(clerks), base_of)
    print(
        f"baseline GET /api/v1/me, 64 clients: {me.rate:8.0f} req/s  "
        f"p50 {me.p(0.5):6.1f} ms  p99 {me.p(0.99):6.1f} ms"
    )

    # The probe reads the channel of a clerk who does not post. A second probe asks at the
    # same time for FLOOR_PATH: the floor, what the node's event loop allows any request
    # under the same load.
    reader = clerks[-1]
    posting = clerks[:-1]
    read_path = f"/api/v1/channels/{reader.channel_id}/messages?limit=1"
    probes = [ReadProbe(bases[0], reader, read_path), ReadProbe(bases[0], reader, FLOOR_PATH)]
    await asyncio.sleep(args.seconds)
    idle = [await probe.stop() for probe in probes]
    for label, times in zip(PROBE_LABELS, idle, strict=True):
        print(
            f"{label + ', idle:':<46} p50 {ms(times, 0.5):6.1f} ms  "
            f"p99 {ms(times, 0.99):6.1f} ms  ({len(times)} reads)"
        )

    under: list[list[float]] = []
    for count in args.posters:
        if sampler is not None:
            sampler.start()
        loaded = count == max(args.posters)
        probes = (
            [ReadProbe(bases[0], reader, read_path), ReadProbe(bases[0], reader, FLOOR_PATH)]
            if loaded
            else []
        )
        result = await closed_loop(count, args.seconds, poster(posting), base_of)
        if loaded:
            under = [await probe.stop() for probe in probes]
        share = await sampler.stop() if sampler is not None else LockShare()
        print(
            f"posts, {count:3d} posters: {result.rate:8.1f} posts/s  "
            f"p50 {result.p(0.5):6.1f} ms  p99 {result.p(0.99):6.1f} ms  "
            f"errors {result.errors}  {share.describe()}"
        )
    for label, times, quiet in zip(PROBE_LABELS, under, idle, strict=True):
        ratio = ms(times, 0.99) / ms(quiet, 0.99) if quiet else float("nan")
        print(
            f"{label + f', under {max(args.posters)} posters:':<46} "
            f"p50 {ms(times, 0.5):6.1f} ms  p99 {ms(times, 0.99):6.1f} ms  "
            f"({len(times)} reads; p99 {ratio:.1f}x idle)"
        )
    print(f"load average {os.getloadavg()[0]:.2f} at end")


def main() -> None:
    if sys.argv[1:2] == ["--probe"]:
        base, path = sys.argv[2], sys.argv[3]
        token = os.environ["BENCH_PROBE_TOKEN"]
        print(json.dumps(asyncio.run(read_probe(base, path, token))))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument(
        "--posters",
        default="1,8,64",
        type=lambda s: [int(p) for p in s.split(",") if p],
        help="comma-separated poster counts",
    )
    parser.add_argument("--nodes", type=int, default=1, help="server processes")
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes of each server (--workers)"
    )
    parser.add_argument(
        "--database-url",
        default="",
        help="PostgreSQL server to create the bench's database on; "
        "empty: SQLite in a temporary directory",
    )
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/0",
        help="the broker between nodes (with --nodes or --workers above 1)",
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
