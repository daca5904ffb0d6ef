"""Two nodes: two ``dienhong serve`` processes on one PostgreSQL and one Redis.

An event produced through node A reaches a client on node B, and when Redis loses
messages (node B's subscription is killed while A publishes), the client on B still gets
every event, exactly once and in order, from the log.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from server.app import create_app
from server.demo import DemoCity, seed_demo
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


@dataclass
class Node:
    process: asyncio.subprocess.Process
    url: str

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_node(env: dict[str, str], log: Path, port: int | None = None) -> Node:
    """A node on ``port`` (a free one when None; a restarted node takes its old one)."""
    port = port or free_port()
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    node = Node(process, f"http://127.0.0.1:{port}")
    async with httpx.AsyncClient(base_url=node.url, timeout=5) as client:

        async def healthy() -> bool:
            if process.returncode is not None:
                raise RuntimeError(f"node exited: {log.read_text()[-2000:]}")
            return (await client.get("/healthz")).status_code == 200

        try:
            await eventually(
                healthy,
                f"the node on port {port} to answer /healthz",
                timeout=STARTUP_SECS,
                interval=0.1,
                ignoring=(httpx.TransportError,),
            )
        except AssertionError as exc:
            raise RuntimeError(f"{exc}: {log.read_text()[-2000:]}") from None
    return node


async def stop_node(node: Node) -> None:
    if node.process.returncode is None:
        node.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(node.process.wait(), 20)
        except TimeoutError:
            node.process.kill()
            await node.process.wait()


@pytest.fixture
async def two_nodes(
    templates: Templates, tmp_path: Path
) -> AsyncIterator[tuple[Node, Node, DemoCity]]:
    if not (PG_URL and REDIS_URL):
        pytest.skip(
            "two nodes need PostgreSQL and Redis: set DIENHONG_TEST_DATABASE_URL "
            "and DIENHONG_TEST_REDIS_URL (CI does)"
        )
    data_dir = tmp_path / "data"
    url = await fresh_database(templates, "postgresql", data_dir)
    env = {key: value for key, value in os.environ.items() if not key.startswith("DIENHONG_")}
    env |= {
        "DIENHONG_DATA_DIR": str(data_dir),
        "DIENHONG_DATABASE_URL": url,
        "DIENHONG_REDIS_URL": REDIS_URL,
        "DIENHONG_REDIS_CHANNEL": f"dh:nodes:{uuid.uuid4()}",
        "DIENHONG_LOG_SWEEP_INTERVAL_SECS": "0.5",
        "DIENHONG_LOG_JSON": "false",
        "DIENHONG_LOG_LEVEL": "WARNING",
    }
    # The city (and the shared signing key under the data dir) before the nodes start.
    app = create_app(harness_settings(env), features=[])
    ctx = app.state.ctx
    try:
        city, _ = await seed_demo(ctx, password=DEMO_PASSWORD, communes=2, delegates=2)
    finally:
        await ctx.broker.stop()
        await ctx.db.dispose()
    nodes: list[Node] = []
    try:
        for name in ("a", "b"):
            nodes.append(await start_node(env, tmp_path / f"node-{name}.log"))
        yield nodes[0], nodes[1], city
    finally:
        for node in nodes:
            await stop_node(node)
        await drop_database(url)


def harness_settings(env: dict[str, str]) -> object:
    from server.settings import Settings

    return Settings.from_env(env)


async def login(node: Node, username: str) -> str:
    async with httpx.AsyncClient(base_url=node.url, timeout=30) as client:
        response = await client.post(
            "/api/v1/auth/login", json={"username": username, "password": DEMO_PASSWORD}
        )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def recovered(node: Node) -> float:
    async with httpx.AsyncClient(base_url=node.url, timeout=30) as client:
        text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith("dienhong_events_recovered_total "):
            return float(line.split()[1])
    raise AssertionError("no dienhong_events_recovered_total")


async def kill_subscription(node: Node) -> int:
    """Drop node's Redis subscription (as a failing Redis or network would)."""
    client = aioredis.from_url(REDIS_URL)
    try:
        listing = (await client.execute_command("CLIENT", "LIST", "TYPE", "pubsub")).decode()
        killed = 0
        for line in listing.splitlines():
            fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
            if fields.get("name") == f"dienhong-{node.process.pid}-events":
                await client.execute_command("CLIENT", "KILL", "ID", fields["id"])
                killed += 1
        return killed
    finally:
        await client.aclose()


async def test_events_cross_nodes_and_survive_lost_redis_messages(
    two_nodes: tuple[Node, Node, DemoCity],
) -> None:
    import websockets

    node_a, node_b, city = two_nodes
    admin = await login(node_a, "admin")
    ward = await login(node_b, "ward001")  # tokens of one node hold on the other
    unit_id = city.commune_unit_ids[0]
    topic = f"unit:{unit_id}"
    async with (
        websockets.connect(node_b.ws_url, max_size=None) as raw,
        httpx.AsyncClient(
            base_url=node_a.url, timeout=30, headers={"Authorization": f"Bearer {admin}"}
        ) as http,
    ):
        ws = WsClient(raw)
        start = (await ws.auth(ward))["topics"][topic]

        async def rename(n: int) -> None:
            response = await http.patch(f"/api/v1/units/{unit_id}", json={"name": f"Phường {n}"})
            assert response.status_code == 200, response.text

        # Through A, to a client on B.
        await rename(0)
        first = await ws.next_event("unit.updated", timeout=15)
        assert (first["topic"], first["seq"], first["data"]["name"]) == (
            topic,
            start + 1,
            "Phường 0",
        )

        # Redis loses B's subscription again and again while A publishes.
        before = await recovered(node_b)
        count = 1
        for round_ in range(8):
            # Once B has subscribed again (it retries within a fraction of a second).
            await eventually(
                lambda: kill_subscription(node_b), "node B to subscribe again", interval=0.05
            )
            for _ in range(3):
                await rename(count)
                count += 1
            if round_ >= 2 and await recovered(node_b) > before:
                break
        names: list[str] = []
        seqs: list[int] = []
        while len(seqs) < count - 1:
            event = await ws.next_event("unit.updated", timeout=15)
            seqs.append(event["seq"])
            names.append(event["data"]["name"])
        assert seqs == list(range(start + 2, start + count + 1))
        assert names == [f"Phường {n}" for n in range(1, count)]
        # Some of them came from the log, not from Redis.
        assert await recovered(node_b) > before
        await ws.send(op="ping")
        while (await ws.recv())["op"] != "pong":
            pass
