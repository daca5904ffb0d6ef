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
    environ = dict(os.environ, DIENHONG_DATA_DIR=str(data_dir), DIENHONG_LOG_LEVEL="WARNING",
                   DIENHONG_LOG_JSON="false", **env)
    return subprocess.Popen(
        [sys.executable, "-c", "from server.cli import main; raise SystemExit(main())",
         "serve", "--host", "127.0.0.1", "--port", str(port)], env=environ)


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
