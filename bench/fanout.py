"""Fan-out benchmark: one instruction-sized event to N sockets, against a bare baseline.

What it does, all on loopback, and stops by itself:

1. A fresh data dir: ``dienhong demo`` seeds the demo city, then bench accounts are added
   in one bulk insert (one shared Argon2 hash, like the demo) in a ward of their own, and
   their tokens are minted offline with the server's own ``TokenService`` and signing key.
2. ``dienhong serve`` runs as a subprocess on SQLite with Redis as its broker. This
   process is a second node on the same database and Redis: it writes each round's events
   through the one write path (``ctx.write()``/``emit``), which publishes them through the
   ``RedisBroker`` after commit, exactly as another node's directive would arrive.
3. N clients in separate client processes (``bench/swarm.py``) each authenticate and
   receive either one event per client on its own ``user:`` topic (``--mode user``, the
   shape of a directive to N recipients) or one event on the unit topic they all follow
   (``--mode shared``). Latency = client receive time - the moment the committed events
   were handed to the broker, on the machine's shared monotonic clock.
4. The same swarm drives ``bench/bare.py``, a bare ``websockets`` server that only
   broadcasts the same frame, triggered over a control socket; the table prints the ratio.
5. The client processes connect their shares in turn, so both servers hold each
   process's sockets together and write to them in the same pattern. Connecting all at
   once, the server that connects more slowly interleaves the processes finely, and every
   write then wakes another client process on the same two cores.
6. Keepalive pings: both servers ping every ``--ping-interval`` seconds (default 300, past
   the measured rounds). With the usual 20 s, pings start 20 s after each socket opened:
   the faster-connecting server would still be silent during the rounds while the other
   answers pings, and the two would not be measured under the same load.
7. Memory: a fresh server process, RSS from /proc before and with ``--idle`` authenticated
   idle sockets; the difference divided by the count (and the same for the bare server).

    python -m bench.fanout [--clients 3200] [--rounds 10] [--mode both|user|shared]
                           [--idle 8000] [--procs 4] [--ping-interval 300]
                           [--redis-url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, select, update
from websockets.asyncio.client import connect

from bench.common import free_port, percentile, raise_open_files
from bench.swarm import ClientSpec, Swarm
from messaging.events import emit_directive_issued
from server.app import create_app
from server.cli import uvicorn_options
from server.context import Context
from server.events import emit_user_updated
from server.org.models import Confidentiality, Role, Unit, UnitKind, User
from server.realtime.log import Event, current_seqs
from server.settings import Settings

DEMO_PASSWORD = "bench-password-1"
ROUND_TIMEOUT_SECS = 60.0
PAUSE_BETWEEN_ROUNDS_SECS = 0.5
# Accounts per bench ward, like the city's communes (~3,200 staff in 126 units).
WARD_SIZE = 25
# Instruction-sized: a directive of about 1 KB of JSON, in Vietnamese like the real ones.
BODY = (
    "Đề nghị UBND các phường, xã khẩn trương rà soát, báo cáo tình hình thiệt hại do mưa "
    "lớn gây ra trên địa bàn, tổ chức sơ tán người dân khỏi khu vực nguy hiểm, bố trí lực "
    "lượng trực 24/24 giờ và gửi báo cáo về Thường trực HĐND thành phố trước 17 giờ hôm "
    "nay. "
)


def payload(round_id: int) -> dict[str, Any]:
    return {
        "round": round_id,
        "directive_id": 1000 + round_id,
        "title": "Khẩn: ứng phó mưa lớn, ngập úng trên địa bàn thành phố",
        "urgency": "express",
        "confidentiality": "none",
        "sender": {"id": 2, "display_name": "Phùng Thị Hồng", "unit_id": 1},
        "body": BODY * 3,
        "ack_required": True,
        "due_at": "2026-11-23T17:00:00+07:00",
    }


async def _ignore_events(_events: Sequence[Event]) -> None:
    """This process holds no sockets: what the broker brings back is dropped."""


def _ignore_signal(_signal: Any) -> None:
    pass


async def _ignore_resync() -> None:
    pass


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return (
        f"{os.cpu_count()} CPU ({model}), {mem_kib / 1024 / 1024:.1f} GiB RAM, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


@dataclass
class Result:
    mode: str
    server: str
    clients: int
    expected: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    round_p99_ms: list[float] = field(default_factory=list)

    def row(self) -> str:
        values = sorted(self.latencies_ms)
        return (
            f"{self.mode:<7}{self.server:<10}{self.clients:>8}"
            f"{len(values):>8}/{self.expected:<8}"
            f"{percentile(values, 0.5):>9.1f}{percentile(values, 0.99):>9.1f}"
            f"{(values[-1] if values else float('nan')):>9.1f}"
        )

    @property
    def p99(self) -> float:
        return percentile(self.latencies_ms, 0.99)


class TimedBroker:
    """Wraps the real broker to note when committed events are handed to it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.handed_at = 0.0

    async def publish(self, events: Sequence[Event]) -> None:
        self.handed_at = time.monotonic()
        await self.inner.publish(events)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


# --- set-up ------------------------------------------------------------------------


def dienhong_command() -> list[str]:
    script = shutil.which("dienhong")
    return [script] if script else [sys.executable, "-m", "server.cli"]


def server_env(
    data_dir: Path, redis_url: str, channel: str, ping_interval: float
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIENHONG_")}
    env.update(
        {
            "DIENHONG_DATA_DIR": str(data_dir),
            "DIENHONG_REDIS_URL": redis_url,
            "DIENHONG_REDIS_CHANNEL": channel,
            "DIENHONG_LOG_LEVEL": "WARNING",
            "DIENHONG_WS_PING_INTERVAL_SECS": str(ping_interval),
        }
    )
    return env


async def seed_accounts(ctx: Context, count: int) -> tuple[list[int], int]:
    """Add ``count`` staff accounts, 25 per ward like the city's communes, in wards below
    one bench cluster unit; returns their ids and the cluster unit (it has no members of
    its own, so no presence traffic: the shared topic of ``--mode shared``)."""
    async with ctx.write() as w:
        session = w.session
        root_id = (
            (
                await session.execute(
                    select(Unit.id).where(Unit.parent_id.is_(None)).order_by(Unit.id)
                )
            )
            .scalars()
            .first()
        )
        shared_hash = (
            await session.execute(select(User.password_hash).where(User.username == "admin"))
        ).scalar_one()
        cluster = Unit(
            name="Cụm thử tải", kind=UnitKind.DEPARTMENT.value, parent_id=root_id, created_at=w.now
        )
        session.add(cluster)
        await session.flush()
        wards = [
            Unit(
                name=f"Tổ thử tải {i:03d}",
                kind=UnitKind.WARD.value,
                parent_id=cluster.id,
                created_at=w.now,
            )
            for i in range((count + WARD_SIZE - 1) // WARD_SIZE)
        ]
        session.add_all(wards)
        await session.flush()
        rows = [
            {
                "username": f"bench{i:05d}",
                "display_name": f"Cán bộ thử tải {i}",
                "unit_id": wards[i // WARD_SIZE].id,
                "roles": [Role.STAFF.value],
                "clearance": Confidentiality.NONE.value,
                "is_unit_head": False,
                "password_hash": shared_hash,
                "active": True,
                "created_at": w.now,
            }
            for i in range(count)
        ]
        for start in range(0, len(rows), 1000):
            await session.execute(insert(User), rows[start : start + 1000])
        cluster_id = cluster.id
    async with ctx.read() as session:
        ids = list(
            (
                await session.execute(
                    select(User.id).where(User.username.like("bench%")).order_by(User.id)
                )
            ).scalars()
        )
    return ids, cluster_id


async def let_follow_cluster(ctx: Context, user_ids: list[int]) -> None:
    """Shared mode: the clients follow the cluster unit, which only admins may watch from
    a ward; the bench accounts get that role for it (only topic permissions change). The
    ``user.updated`` events make the server drop the accounts it has cached, as an
    admin's change does."""
    roles = [Role.ADMIN.value, Role.STAFF.value]
    async with ctx.write() as w:
        await w.session.execute(update(User).where(User.id.in_(user_ids)).values(roles=roles))
        users = (await w.session.execute(select(User).where(User.id.in_(user_ids)))).scalars()
        for user in users:
            await emit_user_updated(
                w,
                id=user.id,
                username=user.username,
                display_name=user.display_name,
                unit_id=user.unit_id,
                roles=roles,
                clearance=user.clearance,
                is_unit_head=user.is_unit_head,
                active=user.active,
                title=user.title,
            )


def bare_command(port: int, deflate: bool, ping_interval: float) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "bench.bare",
        "--port",
        str(port),
        "--ping-interval",
        str(ping_interval),
    ]
    if deflate:
        command.append("--deflate")
    return command


class ServerProcess:
    def __init__(self, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.command = command
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def launch(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command, env=self.env, stdout=log, stderr=log, preexec_fn=raise_open_files
            )

    async def start(self, health_url: str) -> None:
        self.launch()
        assert self.proc is not None
        async with httpx.AsyncClient() as http:
            for _ in range(600):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.command} exited; see {self.log_path}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(health_url, timeout=2)).status_code < 500:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.command} did not come up; see {self.log_path}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- measuring ------------------------------------------------------------------------


async def run_rounds(
    result: Result, swarm: Swarm, rounds: int, publish: Any, round_base: int
) -> None:
    """Round 0 warms up; then ``rounds`` measured rounds."""
    for index in range(rounds + 1):
        round_id = round_base + index
        handed_at = await publish(round_id)
        stamps = await swarm.collect(round_id, ROUND_TIMEOUT_SECS)
        if index == 0:
            await asyncio.sleep(PAUSE_BETWEEN_ROUNDS_SECS)
            continue
        got = [(t - handed_at) * 1000 for t in stamps.values() if t is not None]
        result.expected += len(stamps)
        result.latencies_ms.extend(got)
        result.round_p99_ms.append(percentile(got, 0.99))
        await asyncio.sleep(PAUSE_BETWEEN_ROUNDS_SECS)


async def connect_swarm(
    url: str, specs: list[ClientSpec], procs: int, deflate: bool, label: str
) -> Swarm:
    swarm = Swarm(url, processes=procs, deflate=deflate)
    ok, errors, secs = await swarm.connect(specs, in_turn=True)
    print(
        f"  {label}: {ok}/{len(specs)} clients connected in {secs:.1f}s"
        + (f"; first errors: {errors[:3]}" if errors else ""),
        flush=True,
    )
    return swarm


async def bench_project(
    ctx: Context,
    broker: TimedBroker,
    ws_url: str,
    mode: str,
    user_ids: list[int],
    cluster_id: int,
    tokens: dict[int, str],
    args: argparse.Namespace,
    round_base: int,
) -> Result:
    result = Result(mode, "dienhong", len(user_ids))
    topic = f"unit:{cluster_id}"
    follow = None
    if mode == "shared":
        await let_follow_cluster(ctx, user_ids)
        async with ctx.read() as session:
            follow = {topic: (await current_seqs(session, [topic]))[topic]}
    specs = [ClientSpec(key=uid, token=tokens[uid], subscribe=follow) for uid in user_ids]
    swarm = await connect_swarm(ws_url, specs, args.procs, True, f"dienhong {mode}")

    async def publish(round_id: int) -> float:
        data = payload(round_id)
        async with ctx.write() as w:
            if mode == "shared":
                # The one event type of unit topics, carrying the same ~1.3 KB as the
                # directive (fields beyond the declared ones are allowed).
                await w.emit(
                    topic,
                    "unit.updated",
                    {"id": cluster_id, "name": "Cụm", "kind": "ward", "parent_id": None, **data},
                )
            else:
                # As a directive to N recipients is written: one event per recipient.
                await emit_directive_issued(w, user_ids, directive=data)
        return broker.handed_at

    try:
        await run_rounds(result, swarm, args.rounds, publish, round_base)
    finally:
        await swarm.close()
    return result


async def bench_bare(
    bare_port: int, mode: str, user_ids: list[int], args: argparse.Namespace, round_base: int
) -> Result:
    result = Result(mode, "bare", len(user_ids))
    specs = [ClientSpec(key=uid, token=str(uid)) for uid in user_ids]
    swarm = await connect_swarm(
        f"ws://127.0.0.1:{bare_port}/ws", specs, args.procs, True, f"bare {mode}"
    )
    try:
        async with connect(
            f"ws://127.0.0.1:{bare_port}/control", compression=None, max_size=None
        ) as control:

            async def publish(round_id: int) -> float:
                text = json.dumps(
                    {"op": "broadcast", "mode": mode, "round": round_id, "data": payload(round_id)},
                    ensure_ascii=False,
                )
                handed_at = time.monotonic()
                await control.send(text)
                await control.recv()
                return handed_at

            await run_rounds(result, swarm, args.rounds, publish, round_base)
    finally:
        await swarm.close()
    return result


async def idle_memory(
    start: Any,
    pid_of: Any,
    ws_url: str,
    specs: list[ClientSpec],
    args: argparse.Namespace,
    label: str,
) -> tuple[int, int, int]:
    """RSS before and with ``len(specs)`` idle authenticated sockets (KiB), and how many."""
    await start()
    warm = await connect_swarm(ws_url, specs[:50], 1, True, f"{label} warm-up")
    await warm.close()
    await asyncio.sleep(2)
    before = rss_kib(pid_of())
    swarm = await connect_swarm(ws_url, specs, args.procs, True, f"{label} idle")
    try:
        live = await swarm.live()
        await asyncio.sleep(3)
        after = rss_kib(pid_of())
    finally:
        await swarm.close()
    return before, after, live


# --- main -------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> int:
    raise_open_files()
    print(f"machine: {machine()}")
    data_dir = Path(tempfile.mkdtemp(prefix="dienhong-bench-"))
    channel = f"dienhong:bench:{uuid.uuid4().hex[:8]}"
    env = server_env(data_dir, args.redis_url, channel, args.ping_interval)
    settings = Settings.from_env(env)
    deflate = bool(uvicorn_options(settings).get("ws_per_message_deflate", True))
    modes = {"both": ["user", "shared"], "none": []}.get(args.mode, [args.mode])
    results: list[Result] = []
    memory: list[tuple[str, int, int, int]] = []
    project: ServerProcess | None = None
    bare: ServerProcess | None = None
    ctx: Context | None = None
    try:
        started = time.monotonic()
        await asyncio.to_thread(
            subprocess.run,
            [
                *dienhong_command(),
                "demo",
                "--password",
                DEMO_PASSWORD,
                "--communes",
                "126",
                "--delegates",
                "95",
            ],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        ctx = create_app(settings).state.ctx
        assert ctx is not None
        await ctx.broker.ping()
        # Started as a node starts it: its publisher task carries each round to Redis
        # (without it the rounds would only reach the server through its log sweep).
        await ctx.broker.start(_ignore_events, _ignore_signal, _ignore_resync)
        extra = max(args.clients, args.idle)
        all_ids, cluster_id = await seed_accounts(ctx, extra)
        now = ctx.clock.now()
        tokens = {uid: ctx.tokens.issue(uid, now)[0] for uid in all_ids}
        async with ctx.read() as session:
            accounts = len((await session.execute(select(User.id))).all())
        print(
            f"set-up: {accounts} accounts, {len(tokens)} tokens in "
            f"{time.monotonic() - started:.1f}s; data dir {data_dir}; "
            f"permessage-deflate {'on' if deflate else 'off'}",
            flush=True,
        )
        broker = TimedBroker(ctx.broker)
        ctx.broker = broker

        port = free_port()
        project = ServerProcess(
            [*dienhong_command(), "serve", "--port", str(port)], env, data_dir / "server.log"
        )
        await project.start(f"http://127.0.0.1:{port}/healthz")
        bare_port = free_port()
        bare_cmd = bare_command(bare_port, deflate, args.ping_interval)
        bare = ServerProcess(bare_cmd, env, data_dir / "bare.log")
        await bare.start(f"http://127.0.0.1:{bare_port}/")

        user_ids = all_ids[: args.clients]
        ws_url = f"ws://127.0.0.1:{port}/ws"
        round_base = 1
        for mode in modes:
            results.append(
                await bench_project(
                    ctx, broker, ws_url, mode, user_ids, cluster_id, tokens, args, round_base
                )
            )
            round_base += args.rounds + 1
            results.append(await bench_bare(bare_port, mode, user_ids, args, round_base))
            round_base += args.rounds + 1
        project.stop()
        bare.stop()
        if modes:
            report(args, modes, results, [])

        if args.idle:
            idle_ids = all_ids[: args.idle]
            port = free_port()
            project = ServerProcess(
                [*dienhong_command(), "serve", "--port", str(port)],
                env,
                data_dir / "server-idle.log",
            )
            server_ = project
            memory.append(
                (
                    "dienhong",
                    *await idle_memory(
                        lambda: server_.start(f"http://127.0.0.1:{port}/healthz"),
                        lambda: server_.pid,
                        f"ws://127.0.0.1:{port}/ws",
                        [ClientSpec(key=uid, token=tokens[uid]) for uid in idle_ids],
                        args,
                        "dienhong",
                    ),
                )
            )
            project.stop()
            bare_port = free_port()
            bare_cmd = bare_command(bare_port, deflate, args.ping_interval)
            bare = ServerProcess(bare_cmd, env, data_dir / "bare-idle.log")
            bare_ = bare
            memory.append(
                (
                    "bare",
                    *await idle_memory(
                        lambda: bare_.start(f"http://127.0.0.1:{bare_port}/"),
                        lambda: bare_.pid,
                        f"ws://127.0.0.1:{bare_port}/ws",
                        [ClientSpec(key=uid, token=str(uid)) for uid in idle_ids],
                        args,
                        "bare",
                    ),
                )
            )
    finally:
        for proc in (project, bare):
            if proc is not None:
                proc.stop()
        if ctx is not None:
            await ctx.broker.stop()
            await ctx.db.dispose()
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)

    report(args, modes, results, memory)
    return 0


def report(
    args: argparse.Namespace,
    modes: list[str],
    results: list[Result],
    memory: list[tuple[str, int, int, int]],
) -> None:
    print()
    print(
        f"Fan-out of one ~{len(json.dumps(payload(1), ensure_ascii=False).encode())}-byte "
        f"event, {args.rounds} rounds after a warm-up, {args.procs} client processes, "
        f"keepalive pings every {args.ping_interval:g} s; "
        "latency from hand-off to broker (dienhong) or control frame (bare) to client "
        "receipt."
    )
    print(
        f"{'mode':<7}{'server':<10}{'clients':>8}{'delivered':>17}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
    )
    for result in results:
        print(result.row())
    for mode in modes:
        ours = next(r for r in results if r.mode == mode and r.server == "dienhong")
        base = next(r for r in results if r.mode == mode and r.server == "bare")
        ratio = ours.p99 / base.p99 if base.p99 else float("nan")
        print(
            f"p99 ratio dienhong/bare ({mode}): {ratio:.2f}  (target <= 1.5)  "
            f"per-round p99 ms dienhong {[round(x) for x in ours.round_p99_ms]}, "
            f"bare {[round(x) for x in base.round_p99_ms]}"
        )
    for label, before, after, live in memory:
        per = (after - before) / live if live else float("nan")
        target = "  (target <= 40)" if label == "dienhong" else ""
        print(
            f"idle memory {label}: {live} sockets, RSS {before / 1024:.1f} -> "
            f"{after / 1024:.1f} MiB = {per:.1f} KiB per connection{target}",
            flush=True,
        )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=3200)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--mode",
        choices=["both", "user", "shared", "none"],
        default="both",
        help="none: only the idle-memory figure",
    )
    parser.add_argument(
        "--idle", type=int, default=8000, help="idle sockets for the memory figure (0 skips it)"
    )
    parser.add_argument("--procs", type=int, default=4, help="client processes")
    parser.add_argument(
        "--ping-interval",
        type=float,
        default=300.0,
        help="keepalive ping interval of both servers, in seconds",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--keep", action="store_true", help="keep the data dir and logs")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
