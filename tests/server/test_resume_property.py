"""Resume is exact: however a socket is dropped while events are produced, the client
that resumes from its last seq ends with every event exactly once, in order."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.harness import RunningServer
from tests.server.support import small_city

_topics = itertools.count(900_001)


@pytest.fixture
async def core(make_server: MakeServer) -> RunningServer:
    server = await make_server(features=[])
    await small_city(server)
    return server


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    total=st.integers(min_value=1, max_value=30),
    per_write=st.integers(min_value=1, max_value=4),
    drops=st.lists(st.integers(min_value=0, max_value=30), max_size=4),
    abrupt=st.booleans(),
    seed=st.integers(min_value=0, max_value=2**16),
)
async def test_resume_delivers_every_event_once_in_order(
    core: RunningServer,
    total: int,
    per_write: int,
    drops: list[int],
    abrupt: bool,
    seed: int,
) -> None:
    # An admin may follow any unit topic: each example gets a topic of its own.
    topic = f"unit:{next(_topics)}"
    token = await core.login("admin", DEMO_PASSWORD)
    pauses = random.Random(seed)

    async def produce() -> None:
        left = total
        while left:
            async with core.ctx.write() as w:
                for _ in range(min(per_write, left)):
                    await w.emit(topic, "test.note", {"left": left})
                    left -= 1
            # Sometimes straight on, sometimes let the sockets run first.
            for _ in range(pauses.randrange(3)):
                await asyncio.sleep(0)
            if pauses.random() < 0.2:
                await asyncio.sleep(0.005)

    producer = asyncio.create_task(produce())
    received: list[int] = []
    pending_drops = sorted(drops)
    reconnects = 0
    try:
        while len(received) < total:
            reconnects += 1
            assert reconnects <= len(drops) + 1
            async with core.socket(token) as ws:
                await ws.send(op="subscribe", topics={topic: received[-1] if received else 0})
                while len(received) < total:
                    message = await ws.recv(timeout=10)
                    if message["op"] == "event" and message["topic"] == topic:
                        received.append(message["seq"])
                    elif message["op"] in ("reset", "error"):
                        raise AssertionError(message)
                    if pending_drops and len(received) >= pending_drops[0]:
                        while pending_drops and len(received) >= pending_drops[0]:
                            pending_drops.pop(0)
                        if abrupt:
                            ws.ws.transport.abort()
                        break
        await producer
    finally:
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer
    assert received == list(range(1, total + 1))
