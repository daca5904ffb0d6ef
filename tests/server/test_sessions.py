"""Ending sessions at once (token versions) and lifting sign-in throttles, across nodes."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
import websockets
from sqlalchemy import select

from server.auth.models import LoginThrottle
from server.clock import ManualClock
from server.demo import DemoCity
from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.harness import RunningServer
from tests.server.support import audit_actions, small_city

LOGIN = "/api/v1/auth/login"
NEW_PASSWORD = "Sông Hồng chảy qua 36 phố"


async def _closed_with(ws: websockets.WebSocketClientProtocol) -> int | None:
    with pytest.raises(websockets.ConnectionClosed):
        for _ in range(50):
            await asyncio.wait_for(ws.recv(), 5)
    return ws.close_code


async def _me(server: RunningServer, token: str) -> httpx.Response:
    async with server.http(token) as client:
        return await client.get("/api/v1/me")


@pytest.mark.parametrize("how", ["sign_out", "reset", "disable", "own_password"])
async def test_every_way_of_ending_sessions_ends_tokens_and_sockets_on_every_node(
    make_server: MakeServer,
    backend: str,
    how: str,
) -> None:
    first = await make_server()
    # Several nodes share PostgreSQL and Redis; an SQLite city is one node.
    second = await make_server() if backend == "postgresql" else first
    city = await small_city(first)
    target = city.ward_user_ids[0]
    admin = await first.login("admin", DEMO_PASSWORD)
    old = await first.login("ward001", DEMO_PASSWORD)
    # Both nodes have authenticated (and cached) the user.
    assert (await _me(first, old)).status_code == 200
    assert (await _me(second, old)).status_code == 200
    async with first.socket(old) as here, second.socket(old) as there:
        if how == "own_password":
            async with first.http(old) as client:
                answer = await client.post(
                    "/api/v1/me/password",
                    json={"current_password": DEMO_PASSWORD, "new_password": NEW_PASSWORD},
                )
            assert answer.status_code == 200, answer.text
            fresh = answer.json()["access_token"]
            assert (await _me(second, fresh)).status_code == 200
        else:
            async with first.http(admin) as client:
                if how == "sign_out":
                    answer = await client.post(f"/api/v1/users/{target}/sign-out-everywhere")
                elif how == "reset":
                    answer = await client.post(
                        f"/api/v1/users/{target}/password-reset", json={"password": NEW_PASSWORD}
                    )
                else:
                    answer = await client.patch(f"/api/v1/users/{target}", json={"active": False})
            assert answer.status_code == 200, answer.text
        assert await _closed_with(here.ws) == 4401
        assert await _closed_with(there.ws) == 4401
    for node in (first, second):
        refused = await _me(node, old)
        assert refused.status_code == 401
        code = refused.json()["error"]["code"]
        assert code == ("invalid_token" if how == "disable" else "token_revoked")
        with pytest.raises(websockets.ConnectionClosed):
            async with node.socket(old):
                pass
    if how == "reset":
        async with first.http() as client:
            signed = await client.post(
                LOGIN, json={"username": "ward001", "password": NEW_PASSWORD}
            )
        assert signed.json()["must_change_password"] is True
        fresh = signed.json()["access_token"]
        async with first.http(fresh) as client:
            changed = await client.post(
                "/api/v1/me/password",
                json={"current_password": NEW_PASSWORD, "new_password": NEW_PASSWORD + "!"},
            )
        assert changed.status_code == 200 and changed.json()["must_change_password"] is False
        assert (await _me(first, fresh)).status_code == 401


async def test_own_password_change_refuses_wrong_current_and_weak_passwords(
    server: RunningServer,
    city: DemoCity,
) -> None:
    token = await server.login("ward002", DEMO_PASSWORD)
    async with server.http(token) as client:
        cases = {
            ("wrong-password", NEW_PASSWORD): ("wrong_password", None),
            (DEMO_PASSWORD, "short1!"): ("weak_password", "too_short"),
            (DEMO_PASSWORD, "Matkhau@2024"): ("weak_password", "common"),
            (DEMO_PASSWORD, "P@ssw0rd!!!!"): ("weak_password", "common"),
            (DEMO_PASSWORD, "ward002-secret"): ("weak_password", "contains_username"),
            (DEMO_PASSWORD, DEMO_PASSWORD): ("weak_password", "unchanged"),
        }
        for (current, new), (code, reason) in cases.items():
            answer = await client.post(
                "/api/v1/me/password", json={"current_password": current, "new_password": new}
            )
            assert answer.status_code == 422, (new, answer.text)
            error = answer.json()["error"]
            assert error["code"] == code
            assert (error.get("details") or {}).get("reason") == reason, (new, error)
    # Nothing changed: the old token and password still work.
    assert (await _me(server, token)).status_code == 200
    await server.login("ward002", DEMO_PASSWORD)


async def test_guessing_from_one_address_does_not_hold_back_another(
    make_server: MakeServer,
) -> None:
    server = await make_server(clock=ManualClock(), login_max_failures=2)
    await small_city(server)
    async with server.http() as client:
        for _ in range(3):
            await client.post(LOGIN, json={"username": "chair", "password": "guess-guess"})
        held = await client.post(LOGIN, json={"username": "chair", "password": DEMO_PASSWORD})
    assert held.status_code == 429
    elsewhere = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=server.url, transport=elsewhere) as client:
        real = await client.post(LOGIN, json={"username": "chair", "password": DEMO_PASSWORD})
    assert real.status_code == 200, real.text


async def test_admin_lifts_a_throttle_and_others_may_not(make_server: MakeServer) -> None:
    server = await make_server(clock=ManualClock(), login_max_failures=2)
    city = await small_city(server)
    async with server.http() as client:
        for _ in range(3):
            await client.post(LOGIN, json={"username": "chair", "password": "guess-guess"})
    for who in ("delegate001", "ward001", "secretary"):
        token = await server.login(who, DEMO_PASSWORD)
        async with server.http(token) as client:
            refused = await client.delete(f"/api/v1/users/{city.chair_id}/sign-in-throttle")
        assert refused.status_code == 403
    async with server.ctx.read() as session:
        assert len((await session.execute(select(LoginThrottle))).all()) == 1
    admin = await server.login("admin", DEMO_PASSWORD)
    async with server.http(admin) as client:
        listed = await client.get("/api/v1/admin/users", params={"q": "chair"})
        assert listed.json()["users"][0]["throttled_until"] is not None
        lifted = await client.delete(f"/api/v1/users/{city.chair_id}/sign-in-throttle")
        assert lifted.status_code == 200 and lifted.json() == {"lifted": 1}
        unknown = await client.delete("/api/v1/users/999999/sign-in-throttle")
        assert unknown.status_code == 404
    await server.login("chair", DEMO_PASSWORD)
    assert ("auth.throttle_lifted", "user:chair") in await audit_actions(server)


async def test_old_throttles_are_forgotten(make_server: MakeServer) -> None:
    clock = ManualClock()
    server = await make_server(clock=clock, login_throttle_forget_secs=3600)
    await small_city(server)
    async with server.http() as client:
        await client.post(LOGIN, json={"username": "ghost1", "password": "guess-guess"})
        await clock.advance(3601)
        await client.post(LOGIN, json={"username": "ghost2", "password": "guess-guess"})
    async with server.ctx.read() as session:
        names = (await session.execute(select(LoginThrottle.username))).scalars().all()
        rows = (await session.execute(select(LoginThrottle))).scalars().all()
    assert names == ["ghost2"]
    assert rows[0].last_failure_at == clock.now() - timedelta(seconds=0)
