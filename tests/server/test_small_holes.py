"""Small holes closed: request logs name the route, not the path; /metrics only for an
allowed address or the token; others' roles and clearance hidden in member lists; the data
directory, database, WAL and uploads private to the server's user; bidi names cleaned."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from server.demo import DemoCity
from server.files.runtime import runtime
from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.harness import RunningServer
from tests.server.support import small_city


async def test_request_logs_carry_the_route_template_not_the_path(
    server: RunningServer, city: DemoCity, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "c0ffee" * 5 + "42"
    token = await server.login("delegate001", DEMO_PASSWORD)
    with caplog.at_level(logging.INFO, logger="dienhong"):
        async with server.http(token) as client:
            await client.get(f"/api/v1/polls/987654/receipts/{secret}")
            await client.get("/api/v1/directives/424242")
    lines = [(record.getMessage(), vars(record)) for record in caplog.records]
    assert any("/api/v1/polls/{poll_id}/receipts/{receipt}" in text for text, _ in lines)
    for text, fields in lines:
        assert secret not in text and "424242" not in text, text
        assert all(secret not in str(value) for value in fields.values())


async def test_metrics_only_for_allowed_addresses_or_the_token(make_server: MakeServer) -> None:
    loopback = await make_server()
    async with loopback.http() as client:
        assert (await client.get("/metrics")).status_code == 200
    elsewhere = await make_server(
        metrics_allowed_addresses=("10.0.0.0/8",), metrics_token="scrape-secret-1234"
    )
    async with elsewhere.http() as client:
        refused = await client.get("/metrics")
        assert refused.status_code == 404
        assert refused.json()["error"]["code"] == "not_found"
        assert "dienhong" not in refused.text
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 404
        allowed = await client.get(
            "/metrics", headers={"Authorization": "Bearer scrape-secret-1234"}
        )
        assert allowed.status_code == 200 and "dienhong" in allowed.text
    closed = await make_server(metrics_allowed_addresses=())
    async with closed.http() as client:
        assert (await client.get("/metrics")).status_code == 404


async def test_members_show_others_only_their_names(server: RunningServer, city: DemoCity) -> None:
    url = f"/api/v1/units/{city.root_unit_id}/members"
    async with server.http(await server.login("chair", DEMO_PASSWORD)) as client:
        members = (await client.get(url)).json()["members"]
    by_name = {m["username"]: m for m in members}
    assert set(by_name) >= {"chair", "standing"}
    assert set(by_name["standing"]) == {"id", "username", "display_name", "unit_id"}
    assert by_name["chair"]["roles"] and by_name["chair"]["clearance"] == "secret"
    async with server.http(await server.login("admin", DEMO_PASSWORD)) as client:
        members = (await client.get(url)).json()["members"]
    assert all("roles" in m and "clearance" in m and "active" not in m for m in members)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_data_directory_database_wal_and_uploads_are_private(
    make_server: MakeServer, backend: str
) -> None:
    server = await make_server()
    await small_city(server)
    token = await server.login("standing", DEMO_PASSWORD)
    async with server.http(token) as client:
        uploaded = await client.post(
            "/api/v1/files", files={"file": ("Báo cáo\u202etxt.exe", b"noi dung", "text/plain")}
        )
    assert uploaded.status_code == 201, uploaded.text
    data_dir = server.settings.data_dir
    store = runtime(server.ctx).store
    assert mode(data_dir) == 0o700
    for directory in (store.root, store.blobs, store.tmp, store.renders):
        assert mode(directory) == 0o700, directory
    blobs = [p for p in store.blobs.rglob("*") if p.is_file()]
    assert blobs and all(mode(p) == 0o600 for p in blobs)
    for p in store.blobs.rglob("*"):
        if p.is_dir():
            assert mode(p) == 0o700, p
    if backend == "sqlite":
        database = data_dir / "dienhong.sqlite3"
        wal = data_dir / "dienhong.sqlite3-wal"
        assert database.exists() and wal.exists()
        for path in (database, wal, data_dir / "dienhong.sqlite3-shm"):
            if path.exists():
                assert mode(path) == 0o600, path
    # The bidi override is gone from the stored name.
    assert uploaded.json()["name"] == "Báo cáotxt.exe"
