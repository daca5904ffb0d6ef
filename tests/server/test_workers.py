"""``dienhong serve --workers 2``: one port, two worker processes, each a node of its own.

A real ``dienhong serve --workers 2`` subprocess on PostgreSQL and Redis: sockets land on
both workers, an event written through one reaches the sockets held by the other, a worker
killed with SIGKILL is started again while the other keeps answering, and SIGTERM to the
parent stops everything (sockets closed with 1012) with exit code 0. Without Redis the
command refuses to start, before touching the database.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import websockets

from server.app import create_app
from server.demo import DemoCity, seed_demo
from server.settings import Settings
from server.workers import STOP_TIMEOUT_SECS
from tests.conftest import DEMO_PASSWORD
from tests.harness import (
    PG_URL,
    REDIS_URL,
    Templates,
    WsClient,
    drop_database,
    eventually,
    fresh_database,
)

ROOT = Path(__file__).resolve().parents[2]
STARTUP_SECS = 90
SOCKETS = 20
WORKER_LINE = re.compile(r"^worker (\d+): pid (\d+), node ([0-9a-f]+)$", re.MULTILINE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (exited, or a zombie not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


@dataclass
class Served:
    process: asyncio.subprocess.Process
    url: str
    log: Path
    city: DemoCity

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws"

    def workers(self) -> list[tuple[int, int, str]]:
        """(number, pid, node) of every worker started so far, in order of start."""
        return [
            (int(number), int(pid), node)
            for number, pid, node in WORKER_LINE.findall(self.log.read_text())
        ]


def clean_env(**values: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DIENHONG_")}
    return env | values


async def serve(env: dict[str, str], log: Path, *args: str) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server.cli",
            "serve",
            *args,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )


async def get(url: str, path: str, token: str | None = None) -> httpx.Response:
    """One request on a connection of its own (so it may land on either worker)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=url, timeout=10, headers=headers) as client:
        return await client.get(path)


async def sockets_per_node(url: str, seen: dict[str, int]) -> dict[str, int]:
    """Read /metrics once (from whichever worker answers) into ``seen``: node -> sockets."""
    text = (await get(url, "/metrics")).text
    node = re.search(r'^dienhong_node_info\{node="([0-9a-f]+)"\} 1\.0$', text, re.MULTILINE)
    count = re.search(r"^dienhong_open_sockets (\S+)$", text, re.MULTILINE)
    assert node is not None and count is not None, text[:2000]
    seen[node.group(1)] = int(float(count.group(1)))
    return seen


@pytest.fixture
async def two_workers(templates: Templates, tmp_path: Path) -> AsyncIterator[Served]:
    if not (PG_URL and REDIS_URL):
        pytest.skip(
            "workers need PostgreSQL and Redis: set DIENHONG_TEST_DATABASE_URL "
            "and DIENHONG_TEST_REDIS_URL (CI does)"
        )
    data_dir = tmp_path / "data"
    url = await fresh_database(templates, "postgresql", data_dir)
    env = clean_env(
        DIENHONG_DATA_DIR=str(data_dir),
        DIENHONG_DATABASE_URL=url,
        DIENHONG_REDIS_URL=REDIS_URL,
        DIENHONG_REDIS_CHANNEL=f"dh:workers:{uuid.uuid4()}",
        DIENHONG_LOG_SWEEP_INTERVAL_SECS="0.5",
        DIENHONG_LOG_JSON="false",
        DIENHONG_LOG_LEVEL="WARNING",
    )
    app = create_app(Settings.from_env(env), features=[])
    ctx = app.state.ctx
    try:
        city, _ = await seed_demo(ctx, password=DEMO_PASSWORD, communes=2, delegates=2)
    finally:
        await ctx.broker.stop()
        await ctx.db.dispose()
    port = free_port()
    log = tmp_path / "serve.log"
    process = await serve(env, log, "--host", "127.0.0.1", "--port", str(port), "--workers", "2")
    served = Served(process, f"http://127.0.0.1:{port}", log, city)

    async def both_started() -> bool:
        if process.returncode is not None:
            raise RuntimeError(f"serve exited: {log.read_text()[-3000:]}")
        if len(served.workers()) < 2:
            return False
        return (await get(served.url, "/healthz")).status_code == 200

    try:
        await eventually(
            both_started,
            "both workers to start and answer /healthz",
            timeout=STARTUP_SECS,
            interval=0.1,
            ignoring=(httpx.TransportError,),
        )
        yield served
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await drop_database(url)


async def login(url: str, username: str) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.post(
            "/api/v1/auth/login", json={"username": username, "password": DEMO_PASSWORD}
        )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def test_two_workers_share_the_port_and_carry_events_between_them(
    two_workers: Served,
) -> None:
    served = two_workers
    log = served.log.read_text()
    assert "2 workers" in log
    started = served.workers()
    assert sorted(number for number, _, _ in started) == [1, 2]
    assert len({pid for _, pid, _ in started}) == 2
    assert len({node for _, _, node in started}) == 2
    assert served.process.pid not in {pid for _, pid, _ in started}

    admin = await login(served.url, "admin")
    ward = await login(served.url, "ward001")
    unit_id = served.city.commune_unit_ids[0]
    topic = f"unit:{unit_id}"
    connections: list[websockets.ClientConnection] = []
    clients: list[WsClient] = []

    async def connect() -> None:
        raw = await websockets.connect(served.ws_url, max_size=None)
        connections.append(raw)
        client = WsClient(raw)
        await client.auth(ward)
        clients.append(client)

    try:
        # In batches opened at once, so that both workers' accept loops take some; more
        # batches only if one worker happened to take every socket of the first.
        seen: dict[str, int] = {}

        async def counted() -> bool:
            await sockets_per_node(served.url, seen)
            return len(seen) == 2 and sum(seen.values()) == len(clients)

        for _ in range(5):
            await asyncio.gather(*(connect() for _ in range(SOCKETS)))
            seen.clear()
            await eventually(counted, "both workers' socket counts", timeout=30, interval=0.05)
            if min(seen.values()) > 0:
                break
        assert set(seen) == {node for _, _, node in started}
        assert min(seen.values()) > 0, seen

        starts = [client.last[topic] for client in clients]
        # Written through whichever worker takes each request; every socket, on either
        # worker, gets both events in order.
        for n in range(2):
            async with httpx.AsyncClient(
                base_url=served.url, timeout=30, headers={"Authorization": f"Bearer {admin}"}
            ) as http:
                response = await http.patch(
                    f"/api/v1/units/{unit_id}", json={"name": f"Phường số {n}"}
                )
            assert response.status_code == 200, response.text
        for client, start in zip(clients, starts, strict=True):
            for n in range(2):
                event = await client.next_event("unit.updated", timeout=15)
                assert (event["topic"], event["seq"], event["data"]["name"]) == (
                    topic,
                    start + 1 + n,
                    f"Phường số {n}",
                )
    finally:
        for raw in connections:
            await raw.close()


async def test_a_killed_worker_is_started_again_and_sigterm_stops_them_all(
    two_workers: Served,
) -> None:
    served = two_workers
    (_, killed_pid, killed_node), (_, other_pid, other_node) = sorted(served.workers())
    os.kill(killed_pid, signal.SIGKILL)
    await eventually(lambda: gone(killed_pid), "the killed worker to end", timeout=10)
    # The other worker keeps answering on the same port meanwhile.
    for _ in range(10):
        assert (await get(served.url, "/healthz")).status_code == 200

    def replaced() -> bool:
        return len(served.workers()) == 3

    await eventually(replaced, "the killed worker to be started again", timeout=STARTUP_SECS)
    number, new_pid, new_node = served.workers()[2]
    assert number == 1 and new_pid not in (killed_pid, other_pid)
    assert new_node not in (killed_node, other_node)
    assert f"worker 1 (pid {killed_pid}) died (killed by SIGKILL)" in served.log.read_text()

    seen: dict[str, int] = {}

    async def both_answer() -> bool:
        await sockets_per_node(served.url, seen)
        return {other_node, new_node} <= set(seen)

    await eventually(both_answer, "the new worker and the other to answer", timeout=30)
    assert killed_node not in seen

    # SIGTERM to the parent: sockets are closed with 1012 (service restart), every worker
    # exits, and so does the parent, with 0.
    ward = await login(served.url, "ward001")
    async with websockets.connect(served.ws_url, max_size=None) as raw:
        await WsClient(raw).auth(ward)
        served.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(served.process.wait(), STOP_TIMEOUT_SECS)
        assert code == 0, served.log.read_text()[-3000:]
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(raw.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
    for pid in (other_pid, new_pid):
        assert not Path(f"/proc/{pid}").exists()  # ended, and reaped by the parent
    assert "all 2 workers stopped" in served.log.read_text()


async def test_workers_stop_when_their_supervisor_is_killed(two_workers: Served) -> None:
    # A supervisor killed outright (SIGKILL, the OOM killer) leaves no orphan serving the
    # port unsupervised: the kernel sends each worker SIGTERM and it stops as a node stops.
    served = two_workers
    pids = [pid for _, pid, _ in served.workers()]
    served.process.kill()
    await served.process.wait()
    await eventually(
        lambda: all(gone(pid) for pid in pids),
        "every worker to end after its supervisor was killed",
        timeout=STOP_TIMEOUT_SECS,
    )


def run_serve(tmp_path: Path, *args: str, **values: str) -> tuple[int, str, Path]:
    import subprocess

    data_dir = tmp_path / "refused"
    env = clean_env(DIENHONG_DATA_DIR=str(data_dir), DIENHONG_LOG_JSON="false", **values)
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--port", str(free_port()), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
    )
    return done.returncode, done.stderr.decode(), data_dir


def test_several_workers_without_redis_are_refused_before_touching_the_database(
    tmp_path: Path,
) -> None:
    code, err, data_dir = run_serve(tmp_path, "--workers", "2")
    assert code == 1
    assert err.strip() == (
        "2 workers need Redis to carry events between them: set DIENHONG_REDIS_URL "
        "(redis://...), or serve with one worker."
    )
    assert not (data_dir / "dienhong.sqlite3").exists()
    # The setting, too.
    code, err, _ = run_serve(tmp_path, DIENHONG_WORKERS="3")
    assert code == 1 and "3 workers need Redis" in err


@pytest.mark.parametrize(
    ("count", "says"),
    [("0", "must be at least 1, not 0"), ("-2", "must be at least 1"), ("100000", "per core")],
)
def test_a_senseless_worker_count_is_a_configuration_error(
    tmp_path: Path, count: str, says: str
) -> None:
    code, err, data_dir = run_serve(tmp_path, "--workers", count)
    assert code == 2
    assert err.startswith("configuration error: --workers") and says in err
    assert "Traceback" not in err
    assert not (data_dir / "dienhong.sqlite3").exists()
