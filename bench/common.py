"""What the benchmarks share: ports, the server process, percentiles, client pipes."""

from __future__ import annotations

import asyncio
import math
import os
import resource
import socket
import subprocess
import sys
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    """An unused TCP port on the loopback address."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def raise_open_files() -> int:
    """Sockets are files: raise the soft limit to the hard limit (inherited by children)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1); NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
    return ordered[index]


def start_server(data_dir: Path, port: int, **env: str) -> subprocess.Popen[bytes]:
    """``dienhong serve`` on 127.0.0.1:``port`` over ``data_dir`` (quiet logs)."""
    environ = dict(
        os.environ,
        DIENHONG_DATA_DIR=str(data_dir),
        DIENHONG_LOG_LEVEL="WARNING",
        DIENHONG_LOG_JSON="false",
        **env,
    )
    # BENCH_PROFILE=FILE runs the server under cProfile and writes its profile to FILE
    # when it stops (the benchmark stops it with SIGTERM, a graceful exit).
    profile = os.environ.get("BENCH_PROFILE")
    runner = (
        ["-m", "cProfile", "-o", profile, "-m", "server.cli"]
        if profile
        else ["-c", "from server.cli import main; raise SystemExit(main())"]
    )
    return subprocess.Popen(
        [
            sys.executable,
            *runner,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=environ,
    )


async def wait_healthy(base: str, proc: subprocess.Popen[bytes]) -> None:
    """Wait until ``/healthz`` answers 200 (at most 30 s)."""
    async with httpx.AsyncClient(base_url=base) as client:
        for _ in range(600):
            if proc.poll() is not None:
                raise RuntimeError("the server exited")
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("the server did not come up")


async def ask_all(pipes: Sequence[Connection], command: Any) -> list[Any]:
    """Send a command to every client process and gather their answers."""
    for pipe in pipes:
        pipe.send(command)
    return list(await asyncio.gather(*(asyncio.to_thread(pipe.recv) for pipe in pipes)))


async def seed_demo_meeting(
    data_dir: Path, delegates: int, password: str, *, in_session: bool = False
) -> tuple[list[str], str, int]:
    """A demo city with ``delegates`` delegates and its meeting, seeded through the services.

    With ``in_session`` the chair starts the meeting and every member is checked in.
    Returns the delegates' tokens, the chair's token and the meeting id.
    """
    from datetime import UTC, datetime

    from sqlalchemy import select

    from meeting.meetings import change_state
    from meeting.models import Attendance, Meeting, MeetingState
    from server.app import create_app
    from server.auth.principal import Principal
    from server.demo import seed_demo
    from server.migrate import migrate
    from server.org.models import User
    from server.settings import Settings

    settings = Settings(data_dir=data_dir, log_json=False)
    await migrate(settings)
    ctx = create_app(settings).state.ctx
    try:
        city, _summary = await seed_demo(ctx, password=password, communes=2, delegates=delegates)
        async with ctx.read() as session:
            meeting_id = int(
                (
                    await session.execute(select(Meeting.id).order_by(Meeting.id).limit(1))
                ).scalar_one()
            )
            chair_user = await session.get(User, city.chair_id)
        if in_session:
            assert chair_user is not None
            await change_state(ctx, Principal.of(chair_user), meeting_id, MeetingState.IN_SESSION)
            async with ctx.write() as w:
                for uid in [city.chair_id, *city.delegate_ids]:
                    w.session.add(
                        Attendance(
                            meeting_id=meeting_id,
                            user_id=uid,
                            present=True,
                            checked_in_at=w.now,
                            absent_reason="",
                            marked_by=uid,
                            updated_at=w.now,
                        )
                    )
        now = datetime.now(UTC)
        tokens = [ctx.tokens.issue(uid, now)[0] for uid in city.delegate_ids]
        chair = ctx.tokens.issue(city.chair_id, now)[0]
    finally:
        await ctx.db.dispose()
    return tokens, chair, meeting_id
