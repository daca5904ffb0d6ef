"""Reconnect storm: every client connects, signs in and resumes at once, as after a restart.

What it does, all on loopback, and stops by itself:

1. A fresh data dir: ``dienhong demo`` seeds the demo city, then N bench accounts are
   added, 25 per ward like the city's communes (``bench.fanout``'s set-up), with their
   tokens minted offline. One event is written on every ward's topic and every inbox, so
   each resuming client has something to catch up on.
2. The client processes (``bench/swarm.py``) are started first and wait. Then
   ``dienhong serve`` starts (SQLite, Redis as its broker, as ``bench.fanout`` runs it);
   the clock starts when its ``/healthz`` first answers, the moment a restarted node is
   ready. Every client then connects at once, sends ``auth``, waits for ``ready``, sends
   ``subscribe`` with the seq it held before the restart for its inbox and its ward, and
   waits for ``subscribed`` on both: the web client's resume. The figure is the time
   until the last client is resumed, with the CPU time the server used meanwhile (a
   loaded machine stretches the first several times, the second much less).
3. The same swarm, in the same run, against ``bench/bare.py`` (a bare ``websockets``
   server): connect, ``auth``, ``ready``; the floor the library sets.

    python -m bench.reconnect [--clients 3200] [--procs 4] [--workers 1]
                              [--redis-url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from bench.common import free_port, raise_open_files
from bench.fanout import (
    DEMO_PASSWORD,
    ServerProcess,
    bare_command,
    dienhong_command,
    machine,
    seed_accounts,
    server_env,
)
from bench.swarm import ClientSpec, Swarm
from server.app import create_app
from server.context import Context
from server.org.models import User
from server.realtime.log import current_seqs
from server.settings import Settings

# The target of issue 17: 3,200 sockets resumed within this long of the node being ready.
TARGET_SECS = 5.0


async def write_missed_events(ctx: Context, user_ids: list[int]) -> dict[int, dict[str, int]]:
    """One event on every inbox and ward topic; returns, per user, the seqs just before."""
    async with ctx.read() as session:
        units = dict(
            (await session.execute(select(User.id, User.unit_id).where(User.id.in_(user_ids))))
            .tuples()
            .all()
        )
    topics = sorted({f"unit:{u}" for u in units.values()} | {f"user:{uid}" for uid in user_ids})
    async with ctx.read() as session:
        before = await current_seqs(session, topics)
    async with ctx.write() as w:
        await w.emit_many(topics, "bench.missed", {"note": "written while the node was down"})
    return {
        uid: {
            f"user:{uid}": before[f"user:{uid}"],
            f"unit:{units[uid]}": before[f"unit:{units[uid]}"],
        }
        for uid in user_ids
    }


def cpu_secs(pid: int) -> tuple[float, float]:
    """CPU time (user, system; all threads) a process and its live children (the workers
    of ``serve --workers``) have used so far (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        # After the name: state, ppid, ..., utime and stime (fields 14 and 15 of the line).
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            user += int(fields[11]) / tick
            system += int(fields[12]) / tick
    return user, system


def load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


@dataclass(frozen=True)
class StormResult:
    ok: int
    secs: float
    # CPU seconds the server used meanwhile: far less sensitive to other work on the
    # machine than the wall-clock time, which a loaded machine stretches several times.
    cpu: float
    # Of which in the kernel (system calls: accepting, reading and writing the sockets).
    system: float
    load: str


async def storm(
    label: str,
    start: ServerProcess,
    health_url: str,
    ws_url: str,
    specs: list[ClientSpec],
    procs: int,
) -> StormResult:
    """Clients waiting, a server starting; connect all once it is ready."""
    swarm = Swarm(ws_url, processes=procs, deflate=False)
    try:
        # The client processes are up (spawned) before the server: a live count answers.
        await swarm.live()
        await start.start(health_url)
        ready_at = time.monotonic()
        cpu_at_ready = cpu_secs(start.pid)
        ok, errors, _secs = await swarm.connect(specs)
        secs = time.monotonic() - ready_at
        cpu_now = cpu_secs(start.pid)
    finally:
        await swarm.close()
        start.stop()
    user = cpu_now[0] - cpu_at_ready[0]
    system = cpu_now[1] - cpu_at_ready[1]
    result = StormResult(ok, secs, user + system, system, load())
    print(
        f"  {label}: {ok}/{len(specs)} resumed {secs:.2f}s after ready, server CPU "
        f"{result.cpu:.2f}s ({system:.2f}s system), load average {result.load}"
        + (f"; first errors: {errors[:3]}" if errors else ""),
        flush=True,
    )
    return result


async def main(args: argparse.Namespace) -> int:
    raise_open_files()
    print(f"machine: {machine()}")
    data_dir = Path(tempfile.mkdtemp(prefix="dienhong-reconnect-"))
    env = server_env(data_dir, args.redis_url, f"dienhong:bench:{uuid.uuid4().hex[:8]}", 20.0)
    settings = Settings.from_env(env)
    ctx: Context | None = None
    rows: list[tuple[str, StormResult]] = []
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
        user_ids, _cluster = await seed_accounts(ctx, args.clients)
        held = await write_missed_events(ctx, user_ids)
        now = ctx.clock.now()
        tokens = {uid: ctx.tokens.issue(uid, now)[0] for uid in user_ids}
        await ctx.broker.stop()
        await ctx.db.dispose()
        ctx = None
        print(
            f"set-up: {len(user_ids)} bench accounts in {time.monotonic() - started:.1f}s; "
            f"data dir {data_dir}",
            flush=True,
        )

        port = free_port()
        project = ServerProcess(
            [*dienhong_command(), "serve", "--port", str(port), "--workers", str(args.workers)],
            env,
            data_dir / "server.log",
        )
        specs = [ClientSpec(key=uid, token=tokens[uid], subscribe=held[uid]) for uid in user_ids]
        rows.append(
            (
                f"dienhong, {args.workers} worker{'s' if args.workers > 1 else ''}",
                await storm(
                    "dienhong",
                    project,
                    f"http://127.0.0.1:{port}/healthz",
                    f"ws://127.0.0.1:{port}/ws",
                    specs,
                    args.procs,
                ),
            )
        )

        bare_port = free_port()
        bare = ServerProcess(bare_command(bare_port, False, 20.0), env, data_dir / "bare.log")
        bare_specs = [ClientSpec(key=uid, token=str(uid)) for uid in user_ids]
        rows.append(
            (
                "bare websockets (auth)",
                await storm(
                    "bare",
                    bare,
                    f"http://127.0.0.1:{bare_port}/",
                    f"ws://127.0.0.1:{bare_port}/ws",
                    bare_specs,
                    args.procs,
                ),
            )
        )
    finally:
        if ctx is not None:
            await ctx.broker.stop()
            await ctx.db.dispose()
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)

    print()
    print(
        f"Reconnect storm: {args.clients} clients connect at once when the server is ready, "
        f"{args.procs} client processes."
    )
    print(
        f"{'server':<28}{'resumed':>10}{'secs after ready':>20}{'server CPU s':>14}"
        f"{'of it system':>14}  load average"
    )
    for label, result in rows:
        print(
            f"{label:<28}{result.ok:>10}{result.secs:>20.2f}{result.cpu:>14.2f}"
            f"{result.system:>14.2f}  {result.load}"
        )
    ours, base = rows[0][1], rows[1][1]
    print(
        f"dienhong/bare: {ours.secs / base.secs:.2f} in time, {ours.cpu / base.cpu:.2f} in "
        f"server CPU; dienhong {ours.secs:.2f}s (target <= {TARGET_SECS:g}s on an idle "
        "machine)"
    )
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=3200)
    parser.add_argument("--procs", type=int, default=4, help="client processes")
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes of the node (serve --workers)"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--keep", action="store_true", help="keep the data dir and logs")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
