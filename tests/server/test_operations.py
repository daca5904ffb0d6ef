"""Operations: health, Prometheus metrics, graceful shutdown."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import websockets

from server.demo import DemoCity
from tests import harness
from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.harness import RunningServer
from tests.server.support import small_city


async def test_healthz_when_everything_is_reachable(server: RunningServer) -> None:
    async with server.http() as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


async def test_healthz_503_when_the_database_is_unreachable(backend: str, tmp_path: Path) -> None:
    unreachable = (
        "sqlite+aiosqlite:////nonexistent-dienhong/dir/db.sqlite3"
        if backend == "sqlite"
        else "postgresql+asyncpg://postgres@127.0.0.1:1/none"
    )
    server = RunningServer(harness.test_settings(tmp_path, unreachable, "sqlite"), None, [])
    await server.start()
    try:
        async with server.http() as client:
            response = await client.get("/healthz")
    finally:
        await server.stop()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["database"].startswith("error")
    assert body["checks"]["broker"] == "ok"


async def test_healthz_503_when_redis_is_unreachable(make_server: MakeServer) -> None:
    server = await make_server(features=[], redis_url="redis://127.0.0.1:1/0")
    async with server.http() as client:
        response = await client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"] == {
        "database": "ok",
        "broker": response.json()["checks"]["broker"],
    }
    assert response.json()["checks"]["broker"].startswith("error")


def sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in the metrics")


async def test_metrics_in_prometheus_text(server: RunningServer, city: DemoCity) -> None:
    token = await server.login("ward001", DEMO_PASSWORD)
    unit = f"unit:{city.commune_unit_ids[0]}"
    async with server.http() as client:
        before = (await client.get("/metrics")).text
    async with server.socket(token) as ws:
        async with server.ctx.write() as w:
            for _ in range(3):
                await w.emit(unit, "test.note", {})
        for _ in range(3):
            await ws.next_event("test.note")
        async with server.http(token) as client:
            assert (await client.get("/api/v1/me")).status_code == 200
            response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert sample(text, "dienhong_open_sockets") == 1
    assert (
        sample(text, "dienhong_events_published_total")
        - sample(before, "dienhong_events_published_total")
    ) >= 3
    assert (
        sample(text, "dienhong_events_delivered_total")
        - sample(before, "dienhong_events_delivered_total")
    ) >= 3
    assert sample(text, "dienhong_socket_queue_overflows_total") == 0
    assert (
        'dienhong_http_request_seconds_count{method="GET",route="/api/v1/me",status="200"}' in text
    )
    assert 'route="/api/v1/auth/login",status="200"' in text


async def test_metrics_show_the_event_loops_lag_and_the_write_queues(
    make_server: MakeServer,
) -> None:
    import time

    server = await make_server(loop_lag_interval_secs=0.01)
    await small_city(server)

    def lag(text: str, bucket: str) -> float:
        return sample(text, f'dienhong_event_loop_lag_seconds_bucket{{le="{bucket}"}}')

    async with server.http() as client:
        before = (await client.get("/metrics")).text
        # The loop held for 80 ms, as by a long stretch of work: a sample waits that long.
        time.sleep(0.08)  # noqa: ASYNC251 (holding the loop is the point)
        await asyncio.sleep(0.05)
        text = (await client.get("/metrics")).text
    assert sample(text, "dienhong_event_loop_lag_seconds_count") > sample(
        before, "dienhong_event_loop_lag_seconds_count"
    )
    late = sample(text, "dienhong_event_loop_lag_seconds_count") - lag(text, "0.05")
    late_before = sample(before, "dienhong_event_loop_lag_seconds_count") - lag(before, "0.05")
    assert late - late_before >= 1
    # Each batched writer's queue, by kind: empty when nothing is being written.
    for kind in ("messages", "receipts", "replies", "ballots"):
        assert sample(text, f'dienhong_write_queue_depth{{kind="{kind}"}}') == 0


async def test_request_metrics_are_labelled_by_route_template(
    server: RunningServer, city: DemoCity
) -> None:
    token = await server.login("ward001", DEMO_PASSWORD)
    unit_id = city.commune_unit_ids[0]
    async with server.http(token) as client:
        assert (await client.get(f"/api/v1/units/{unit_id}/members")).status_code == 200
        assert (await client.get("/api/v1/no-such-thing")).status_code == 404
        assert (await client.delete("/api/v1/me")).status_code == 405
        text = (await client.get("/metrics")).text
    assert 'route="/api/v1/units/{unit_id}/members",status="200"' in text
    assert 'route="unmatched",status="404"' in text
    assert 'method="DELETE",route="unmatched",status="405"' in text
    assert f"/api/v1/units/{unit_id}/members" not in text


async def test_graceful_shutdown_closes_sockets_with_1012(make_server: MakeServer) -> None:
    server = await make_server(features=[])
    await small_city(server)
    token = await server.login("ward001", DEMO_PASSWORD)
    async with server.socket(token) as ws:
        await server.stop()
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await ws.recv(timeout=10)
    assert ws.ws.close_code == 1012
