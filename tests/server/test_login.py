"""Signing in: good and bad passwords, unknown and disabled users, the sign-in throttle."""

from __future__ import annotations

from sqlalchemy import select

from server.auth.models import LoginThrottle
from server.clock import ManualClock
from server.demo import DemoCity
from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.harness import RunningServer
from tests.server.support import audit_actions, small_city

LOGIN = "/api/v1/auth/login"


async def test_good_login_answers_the_contract(server: RunningServer, city: DemoCity) -> None:
    async with server.http() as client:
        response = await client.post(LOGIN, json={"username": "ward001", "password": DEMO_PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == server.settings.access_token_ttl_secs
    assert body["user"] == {
        "id": city.ward_user_ids[0],
        "username": "ward001",
        "display_name": body["user"]["display_name"],
        "unit_id": city.commune_unit_ids[0],
        "roles": ["staff"],
    }
    async with server.http(body["access_token"]) as client:
        me = (await client.get("/api/v1/me")).json()
    assert me["id"] == city.ward_user_ids[0]
    assert me["unit"]["id"] == city.commune_unit_ids[0]
    assert ("auth.login", "user:ward001") in await audit_actions(server)


async def test_wrong_password_and_unknown_user_look_the_same(
    server: RunningServer, city: DemoCity
) -> None:
    async with server.http() as client:
        wrong = await client.post(LOGIN, json={"username": "ward001", "password": "nope-nope"})
        unknown = await client.post(LOGIN, json={"username": "nobody", "password": "nope-nope"})
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_credentials"
    assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]
    actions = await audit_actions(server)
    assert ("auth.login_failed", "user:ward001") in actions
    assert ("auth.login_failed", "user:nobody") in actions
    assert not [a for a in actions if a[0] == "auth.login"]


async def test_malformed_login_bodies(server: RunningServer, city: DemoCity) -> None:
    async with server.http() as client:
        not_json = await client.post(
            LOGIN, content=b"{nope", headers={"content-type": "application/json"}
        )
        missing = await client.post(LOGIN, json={"username": "ward001"})
        extra = await client.post(
            LOGIN, json={"username": "ward001", "password": DEMO_PASSWORD, "admin": True}
        )
        array = await client.post(LOGIN, json=["ward001", DEMO_PASSWORD])
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "invalid_json"
    assert array.status_code == 400 and array.json()["error"]["code"] == "invalid_json"
    for response in (missing, extra):
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_request"
    # Nothing was counted against the account.
    async with server.ctx.read() as session:
        assert (await session.execute(select(LoginThrottle))).first() is None


async def test_growing_delays_after_repeated_failures_then_release(
    make_server: MakeServer,
) -> None:
    clock = ManualClock()
    server = await make_server(
        clock=clock, login_max_failures=3, login_delay_base_secs=2, login_lockout_secs=600
    )
    await small_city(server)
    async with server.http() as client:
        for _ in range(3):
            response = await client.post(
                LOGIN, json={"username": "ward002", "password": "wrong-password"}
            )
            assert response.status_code == 401
        # Held back: even the right password is refused, with the time to wait.
        locked = await client.post(LOGIN, json={"username": "ward002", "password": DEMO_PASSWORD})
        assert locked.status_code == 429
        assert locked.json()["error"]["code"] == "locked_out"
        assert int(locked.headers["retry-after"]) == 3
        # Another account is not affected.
        other = await client.post(LOGIN, json={"username": "ward003", "password": DEMO_PASSWORD})
        assert other.status_code == 200
        # Each further failure doubles the wait: 4 s, then 8 s, ... never over the cap.
        waits = []
        for _ in range(10):
            await clock.advance(600)
            wrong = await client.post(
                LOGIN, json={"username": "ward002", "password": "wrong-password"}
            )
            assert wrong.status_code == 401
            held = await client.post(LOGIN, json={"username": "ward002", "password": DEMO_PASSWORD})
            waits.append(int(held.headers["retry-after"]))
        assert waits == [5, 9, 17, 33, 65, 129, 257, 513, 601, 601]
        await clock.advance(599)
        still = await client.post(LOGIN, json={"username": "ward002", "password": DEMO_PASSWORD})
        assert still.status_code == 429
        await clock.advance(2)
        again = await client.post(LOGIN, json={"username": "ward002", "password": DEMO_PASSWORD})
        assert again.status_code == 200, again.text
    # Success forgets the failures.
    async with server.ctx.read() as session:
        assert (await session.execute(select(LoginThrottle))).first() is None
    failed = [a for a in await audit_actions(server) if a == ("auth.login_failed", "user:ward002")]
    assert len(failed) == 13


async def test_unknown_usernames_are_throttled_too(make_server: MakeServer) -> None:
    server = await make_server(clock=ManualClock(), login_max_failures=2)
    await small_city(server)
    async with server.http() as client:
        codes = [
            (
                await client.post(LOGIN, json={"username": "ghost", "password": "whatever1"})
            ).status_code
            for _ in range(3)
        ]
    assert codes == [401, 401, 429]
    async with server.ctx.read() as session:
        row = (
            await session.execute(select(LoginThrottle).where(LoginThrottle.username == "ghost"))
        ).scalar_one()
    assert row.failures == 2 and row.client == "127.0.0.1"


async def test_disabled_user_cannot_sign_in_and_its_tokens_stop(
    server: RunningServer, city: DemoCity
) -> None:
    admin = await server.login("admin", DEMO_PASSWORD)
    old_token = await server.login("ward004", DEMO_PASSWORD)
    async with server.http(admin) as client:
        response = await client.patch(
            f"/api/v1/users/{city.ward_user_ids[3]}", json={"active": False}
        )
        assert response.status_code == 200 and response.json()["active"] is False
    async with server.http() as client:
        refused = await client.post(LOGIN, json={"username": "ward004", "password": DEMO_PASSWORD})
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_credentials"
    async with server.http(old_token) as client:
        me = await client.get("/api/v1/me")
    assert me.status_code == 401 and me.json()["error"]["code"] == "invalid_token"
