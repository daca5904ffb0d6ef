"""A Redis that hangs instead of dying: paused with SIGSTOP, its connections still open.

The test starts its own redis-server on its own loopback port (the shared one is never
paused) and two nodes on it. While Redis is paused, writes are answered, a new socket gets
``ready`` and ``subscribed``, a socket's own signals and pings are answered, and events
written on one node reach a socket on the other from the log; no socket is closed by a
node. When Redis answers again the nodes are back on it, and nothing was lost or doubled.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.harness import IN_CI, RunningServer, WsClient, eventually, free_socket
from tests.server.support import small_city

# Long enough for several deadlines (DIENHONG_BROKER_TIMEOUT_SECS, 2 s by default) and the
# subscription's liveness check to run out while Redis does not answer.
PAUSE_SECS = 8
# Writes answered one after the other while Redis is paused: had each waited for Redis
# even one deadline, they could not all be answered before it resumes.
WRITES_DURING_PAUSE = 12
PATIENCE_SECS = 20


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    binary = shutil.which("redis-server")
    if binary is None:
        if IN_CI:
            raise RuntimeError("redis-server is not installed: .ci/run installs it")
        pytest.skip("redis-server is not installed")
    with free_socket() as sock:
        port = sock.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        binary,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(tmp_path),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = aioredis.from_url(url)
    try:

        async def answers() -> bool:
            assert process.returncode is None, "redis-server did not start"
            return bool(await client.ping())

        await eventually(
            answers, "redis-server to answer", ignoring=(OSError, RedisConnectionError)
        )
        yield process, url
    finally:
        await client.aclose()
        if process.returncode is None:
            os.kill(process.pid, signal.SIGCONT)
            process.kill()
            await process.wait()


async def broker_connected(server: RunningServer) -> bool:
    return server.ctx.broker.connected.is_set()  # type: ignore[attr-defined, no-any-return]


async def test_a_paused_redis_holds_up_no_request_and_no_socket(
    make_server: MakeServer,
    own_redis: tuple[asyncio.subprocess.Process, str],
) -> None:
    redis_process, redis_url = own_redis
    node_a = await make_server(redis_url=redis_url)
    node_b = await make_server(redis_url=redis_url)
    city = await small_city(node_a)
    unit_id = city.commune_unit_ids[0]
    topic = f"unit:{unit_id}"
    admin = await node_a.login("admin", DEMO_PASSWORD)
    ward = await node_b.login("ward001", DEMO_PASSWORD)
    await eventually(lambda: broker_connected(node_b), "node B subscribed", timeout=PATIENCE_SECS)

    received: list[int] = []
    closes: list[object] = []
    signals: list[dict[str, Any]] = []

    async def follow(ws: WsClient) -> None:
        """Collect the unit's events; a close by the node would end the loop."""
        try:
            while True:
                message = await ws.recv(timeout=PATIENCE_SECS * 3)
                if message.get("op") == "event" and message["topic"] == topic:
                    received.append(message["seq"])
                elif message.get("op") == "pong":
                    pongs.put_nowait(message)
                elif message.get("op") == "signal":
                    signals.append(message)
        except Exception as exc:
            closes.append(exc)

    pongs: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    async with node_b.socket(ward) as held, node_a.http(admin) as http:
        start = held.ready["topics"][topic]
        follower = asyncio.create_task(follow(held))

        async def rename(n: int) -> None:
            response = await http.patch(f"/api/v1/units/{unit_id}", json={"name": f"P {n}"})
            assert response.status_code == 200, response.text

        await rename(0)
        await eventually(
            lambda: _has(received, start + 1), "the first event over Redis", timeout=PATIENCE_SECS
        )

        os.kill(redis_process.pid, signal.SIGSTOP)
        try:

            async def during_pause() -> None:
                for n in range(1, WRITES_DURING_PAUSE + 1):
                    await rename(n)
                # A new socket resumes: ready, then subscribed.
                async with node_b.socket(ward) as fresh:
                    frames = await fresh.subscribe({topic: start})
                    assert frames[-1] == {
                        "op": "subscribed",
                        "topic": topic,
                        "seq": frames[-1]["seq"],
                    }
                # The held socket's own signal (presence goes to Redis) and its ping.
                await held.send(
                    op="signal",
                    topic=f"user:{held.ready['user_id']}",
                    type="presence",
                    data={"state": "away"},
                )
                await held.send(op="ping")
                await pongs.get()

            await asyncio.wait_for(during_pause(), PAUSE_SECS)
            # Written on A, carried to B by its log sweep while Redis is still paused.
            await eventually(
                lambda: _has(received, start + 1 + WRITES_DURING_PAUSE),
                "events from the log during the pause",
                timeout=PAUSE_SECS,
            )
            # The node's own sockets hear its signals without Redis: the user is away.
            await eventually(
                lambda: _away(signals), "presence.changed while Redis is paused", timeout=PAUSE_SECS
            )
            assert redis_process.returncode is None
            # Stay paused long enough for the subscription to notice.
            await eventually(
                lambda: _not(broker_connected(node_b)),
                "node B noticing the hang",
                timeout=PATIENCE_SECS,
            )
        finally:
            os.kill(redis_process.pid, signal.SIGCONT)

        await eventually(
            lambda: broker_connected(node_b), "node B subscribed again", timeout=PATIENCE_SECS
        )
        await eventually(
            lambda: broker_connected(node_a), "node A subscribed again", timeout=PATIENCE_SECS
        )
        await rename(WRITES_DURING_PAUSE + 1)
        final = start + 2 + WRITES_DURING_PAUSE
        await eventually(
            lambda: _has(received, final), "the event after the pause", timeout=PATIENCE_SECS
        )
        await held.send(op="ping")
        await asyncio.wait_for(pongs.get(), PATIENCE_SECS)
        assert not closes, f"the node closed the socket: {closes}"
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
    # Every event once, in order.
    assert received == list(range(start + 1, final + 1))


async def _has(received: list[int], seq: int) -> bool:
    return bool(received) and received[-1] >= seq


async def _not(awaitable: object) -> bool:
    return not await awaitable  # type: ignore[misc]


async def test_the_outbound_queue_is_bounded_and_drops_the_oldest() -> None:
    from server.metrics import Metrics
    from server.realtime.broker import RedisBroker
    from server.realtime.hub import Signal

    metrics = Metrics()
    # Not started: nothing drains the queue, as when Redis does not answer.
    broker = RedisBroker("redis://127.0.0.1:1/0", "test", queue_messages=2, metrics=metrics)
    try:
        for n in range(3):
            await broker.publish_signal(Signal("unit:1", "typing", {"n": n}))
        assert broker.queue_depth == 2
        text = metrics.render().decode()
        assert "dienhong_broker_queue_depth 2.0" in text
        assert "dienhong_broker_dropped_total 1.0" in text
        assert [json.loads(message)["s"]["data"] for message, _at in broker._outbound] == [
            {"n": 1},
            {"n": 2},
        ]
    finally:
        await broker._redis.aclose()
        await broker._subscriber.aclose()


async def test_signals_reach_this_nodes_sockets_without_redis() -> None:
    from server.realtime.broker import RedisBroker
    from server.realtime.hub import Signal

    broker = RedisBroker("redis://127.0.0.1:1/0", "test")
    here: list[Signal] = []
    broker._deliver_signal = here.append
    try:
        typing = Signal("channel:3", "typing", {"user_id": 7})
        await broker.publish_signal(typing)
        assert here == [typing]
        # The copy that comes back from Redis is not delivered twice.
        own = broker._outbound[0][0]
        await broker._handle(own.encode())
        assert here == [typing]
        # Another node's signal is, and so is one from a node of the previous release.
        other = {"topic": "channel:3", "type": "typing", "data": {"user_id": 8}}
        await broker._handle(json.dumps({"n": "another-node", "s": other}).encode())
        await broker._handle(json.dumps({"s": other}).encode())
        assert here == [typing, Signal(**other), Signal(**other)]
    finally:
        await broker._redis.aclose()
        await broker._subscriber.aclose()


async def _away(signals: list[dict[str, Any]]) -> bool:
    return any(s["type"] == "presence.changed" and s["data"]["state"] == "away" for s in signals)
