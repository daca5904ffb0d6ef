"""The principal cache: changes to a user apply at once on the node that made them, on
other nodes when the event arrives or at the latest after the cache's time limit; the
cache and the verified-token memory stay bounded."""

from __future__ import annotations

from server.auth.principal import Principal, PrincipalCache
from server.auth.tokens import TokenService
from server.clock import ManualClock
from server.demo import DemoCity
from server.org.models import Confidentiality
from server.org.service import USER_UPDATED, forget_changed_users
from server.realtime.log import Event
from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.harness import RunningServer
from tests.server.support import small_city


def principal(user_id: int) -> Principal:
    return Principal(
        id=user_id,
        username=f"user{user_id}",
        display_name=f"User {user_id}",
        unit_id=1,
        roles=frozenset({"staff"}),
        clearance=Confidentiality.NONE,
    )


async def test_a_disabled_user_is_refused_at_once_on_the_node_that_disabled_it(
    server: RunningServer, city: DemoCity
) -> None:
    admin = await server.login("admin", DEMO_PASSWORD)
    token = await server.login("ward002", DEMO_PASSWORD)
    user_id = city.ward_user_ids[1]
    async with server.http(token) as client:
        assert (await client.get("/api/v1/me")).status_code == 200
    assert server.ctx.principals.get(user_id) is not None
    async with server.http(admin) as client:
        response = await client.patch(f"/api/v1/users/{user_id}", json={"active": False})
        assert response.status_code == 200
    async with server.http(token) as client:
        refused = await client.get("/api/v1/me")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_token"
    assert server.ctx.principals.get(user_id) is None


async def test_new_roles_and_clearance_apply_to_the_next_request(
    server: RunningServer, city: DemoCity
) -> None:
    admin = await server.login("admin", DEMO_PASSWORD)
    token = await server.login("ward003", DEMO_PASSWORD)
    async with server.http(token) as client:
        before = (await client.get("/api/v1/me")).json()
    assert before["roles"] == ["staff"] and before["clearance"] != "secret"
    async with server.http(admin) as client:
        response = await client.patch(
            f"/api/v1/users/{city.ward_user_ids[2]}",
            json={"roles": ["staff", "standing"], "clearance": "secret"},
        )
        assert response.status_code == 200
    async with server.http(token) as client:
        after = (await client.get("/api/v1/me")).json()
    assert after["roles"] == ["staff", "standing"] and after["clearance"] == "secret"


async def test_another_node_refuses_a_disabled_user_within_the_time_limit(
    make_server: MakeServer,
) -> None:
    clock = ManualClock()
    node_a = await make_server(clock=clock, principal_cache_secs=30)
    node_b = await make_server(clock=clock, principal_cache_secs=30)
    city = await small_city(node_a)
    admin = await node_a.login("admin", DEMO_PASSWORD)
    token = await node_a.login("ward004", DEMO_PASSWORD)
    async with node_b.http(token) as client:
        assert (await client.get("/api/v1/me")).status_code == 200
    async with node_a.http(admin) as client:
        response = await client.patch(
            f"/api/v1/users/{city.ward_user_ids[3]}", json={"active": False}
        )
        assert response.status_code == 200
    # Node B may or may not have heard of the change (only a broker between nodes tells
    # it); once the cache's time limit has passed it reads the user again in any case.
    await clock.advance(31)
    async with node_b.http(token) as client:
        refused = await client.get("/api/v1/me")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_token"


async def test_a_user_updated_event_from_any_node_drops_the_user(
    server: RunningServer, city: DemoCity
) -> None:
    cache = server.ctx.principals
    first, second = city.ward_user_ids[0], city.ward_user_ids[1]
    cache.put(principal(first), cache.ticket())
    cache.put(principal(second), cache.ticket())
    now = server.ctx.clock.now()
    forget_changed_users(
        server.ctx,
        [
            Event.create(f"user:{first}", 7, USER_UPDATED, {"id": first}, now),
            # Another type on the user's topic changes nothing about who the user is.
            Event.create(f"user:{second}", 8, "directive.issued", {"id": 1}, now),
        ],
    )
    assert cache.get(first) is None
    assert cache.get(second) == principal(second)


async def test_the_cache_is_bounded_and_entries_expire() -> None:
    clock = ManualClock()
    cache = PrincipalCache(clock, ttl_secs=30, max_entries=3)
    for user_id in range(1, 6):
        cache.put(principal(user_id), cache.ticket())
    assert len(cache) == 3
    assert cache.get(1) is None and cache.get(2) is None
    assert cache.get(5) == principal(5)
    assert cache.get_by_username("user4") == principal(4)
    assert cache.get_by_username("user1") is None
    await clock.advance(30)
    assert cache.get(5) is None and len(cache) == 2


def test_a_read_that_began_before_a_change_does_not_cache_the_old_row() -> None:
    cache = PrincipalCache(ManualClock(), ttl_secs=30, max_entries=10)
    ticket = cache.ticket()
    # The user is changed (and dropped) while its old row is being read.
    cache.forget(1)
    cache.put(principal(1), ticket)
    assert cache.get(1) is None
    cache.put(principal(1), cache.ticket())
    assert cache.get(1) == principal(1)


def test_a_time_limit_of_zero_turns_the_cache_off() -> None:
    cache = PrincipalCache(ManualClock(), ttl_secs=0, max_entries=10)
    cache.put(principal(1), cache.ticket())
    assert cache.get(1) is None and len(cache) == 0


async def test_a_remembered_token_still_expires(make_server: MakeServer) -> None:
    clock = ManualClock()
    server = await make_server(clock=clock, access_token_ttl_secs=60)
    await small_city(server)
    token = await server.login("ward001", DEMO_PASSWORD)
    async with server.http(token) as client:
        assert (await client.get("/api/v1/me")).status_code == 200
        await clock.advance(61)
        expired = await client.get("/api/v1/me")
    assert expired.status_code == 401
    assert expired.json()["error"]["code"] == "token_expired"


async def test_remembered_tokens_are_bounded(server: RunningServer) -> None:
    settings = server.settings.with_overrides(token_cache_size=2)
    tokens = TokenService(settings)
    now = server.ctx.clock.now()
    issued = [tokens.issue(user_id, now)[0] for user_id in (1, 2, 3)]
    for token in issued:
        assert (await tokens.verify(token, now)).user_id is not None
    assert tokens.remembered == 2
    # The one forgotten is checked again from its signature, and still accepted.
    assert (await tokens.verify(issued[0], now)).user_id == 1
