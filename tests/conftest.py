"""Fixtures: ``backend`` (sqlite, and postgresql in CI), ``make_server``, ``server``, ``city``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from server.demo import DemoCity, seed_demo
from server.loop import new_event_loop
from tests.harness import (
    PG_URL,
    REDIS_URL,
    RunningServer,
    Templates,
    backends,
    build_templates,
    drop_database,
    drop_templates,
    fresh_database,
    test_settings,
)

# Property tests judge correctness, not speed: on a loaded machine (or with several test
# processes on few cores) generating inputs is slow, and that is no failure.
hypothesis_settings.register_profile(
    "dienhong", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("dienhong")

DEMO_PASSWORD = "demo-password-1"


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every async test runs on the node's own event loop (reads ahead of writes)."""
    return {"node_loop": new_event_loop}


def pytest_configure(config: pytest.Config) -> None:
    backends()  # fails loudly in CI when PostgreSQL is not configured
    if PG_URL and not REDIS_URL:
        raise pytest.UsageError(
            "DIENHONG_TEST_DATABASE_URL is set without "
            "DIENHONG_TEST_REDIS_URL: the PostgreSQL runs use Redis"
        )


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Templates]:
    built = build_templates(tmp_path_factory.mktemp("templates"))
    yield built
    drop_templates(built)


@pytest.fixture(params=backends())
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


MakeServer = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def make_server(
    templates: Templates, backend: str, tmp_path: Path
) -> AsyncIterator[MakeServer]:
    """Start servers on one fresh database: ``await make_server(clock=..., **settings)``.

    Several servers made by one test share the database (and Redis), like nodes of a city.
    """
    database_url = await fresh_database(templates, backend, tmp_path / "data")
    running: list[RunningServer] = []

    async def make(clock: Any = None, features: Any = None, **overrides: Any) -> RunningServer:
        settings = test_settings(tmp_path / "data", database_url, backend, **overrides)
        if running:
            settings = settings.with_overrides(redis_channel=running[0].settings.redis_channel)
        server = RunningServer(settings, clock, features)
        await server.start()
        running.append(server)
        return server

    yield make
    for server in reversed(running):
        await server.stop()
    await drop_database(database_url)


@pytest.fixture
async def server(make_server: MakeServer) -> RunningServer:
    return await make_server()


@pytest.fixture
async def city(server: RunningServer) -> DemoCity:
    """A small demo city: 6 communes/wards, 9 delegates, password ``DEMO_PASSWORD``."""
    seeded, _summary = await seed_demo(server.ctx, password=DEMO_PASSWORD, communes=6, delegates=9)
    return seeded
