"""Signing in through an OpenID provider (authorization code + PKCE) running on loopback:
the sign-in, and every refusal (bad state, replayed code, wrong nonce, unknown or disabled
account, a provider grant revoked)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from joserfc.jwk import RSAKey
from sqlalchemy import func, select, update

from server.auth.models import OidcLogin
from server.auth.oidc import check_sessions
from server.clock import ManualClock
from server.demo import DemoCity
from server.org.models import User
from tests.conftest import MakeServer
from tests.harness import RunningServer, eventually
from tests.oidc_provider import CITY_PASSWORD, CLIENT_ID, Provider, sso_server
from tests.server.support import audit_actions, small_city

# The provider's tokens last 10 minutes, much less than ours.
PROVIDER_TTL_SECS = 600


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    running = Provider(access_token_ttl_secs=PROVIDER_TTL_SECS)
    await running.start()
    for username in ("ward001", "ward002", "stranger"):
        running.add_user(username, CITY_PASSWORD)
    yield running
    await running.stop()


@pytest.fixture
async def sso(make_server: MakeServer, provider: Provider) -> RunningServer:
    return await sso_server(make_server, provider)


@pytest.fixture
async def city(sso: RunningServer) -> DemoCity:
    return await small_city(sso)


def fragment(location: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(location).fragment).items()}


async def start(server: RunningServer, query: str = "") -> str:
    """The provider's authorization URL a click on the SSO button leads to."""
    async with server.http() as client:
        response = await client.get(f"/api/v1/auth/oidc/start{query}")
    assert response.status_code == 303, response.text
    return response.headers["location"]


async def at_provider(authorize_url: str, username: str) -> str:
    """Sign in at the provider's form; answer the callback URL it redirects to."""
    async with httpx.AsyncClient() as client:
        form = await client.get(authorize_url)
        assert form.status_code == 200, form.text
        answer = await client.post(
            authorize_url, data={"username": username, "password": CITY_PASSWORD}
        )
    assert answer.status_code == 302, answer.text
    return answer.headers["location"]


async def callback(server: RunningServer, url: str) -> dict[str, str]:
    """Follow the provider's redirect to our callback; answer the sign-in page's fragment."""
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith("/app/")
    # Nothing of the sign-in travels in the query of the page's URL.
    assert set(parse_qs(urlsplit(location).query)) <= {"next"}
    return fragment(location)


async def exchange(server: RunningServer, code: str) -> httpx.Response:
    async with server.http() as client:
        return await client.post("/api/v1/auth/oidc/exchange", json={"code": code})


async def sign_in(server: RunningServer, username: str) -> dict[str, str]:
    return await callback(server, await at_provider(await start(server), username))


async def test_status_tells_the_page_whether_sso_is_on(
    make_server: MakeServer, sso: RunningServer
) -> None:
    plain = await make_server()
    async with plain.http() as client:
        off = await client.get("/api/v1/auth/oidc")
        refused = await client.get("/api/v1/auth/oidc/start")
    async with sso.http() as client:
        on = await client.get("/api/v1/auth/oidc")
    assert off.json() == {"enabled": False}
    assert on.json() == {"enabled": True}
    assert refused.status_code == 303
    assert fragment(refused.headers["location"]) == {"sso_error": "oidc_not_configured"}


async def test_sign_in_matches_the_account_and_caps_the_token(
    sso: RunningServer, city: DemoCity, provider: Provider
) -> None:
    authorize = await start(sso)
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"]
    assert query["nonce"] and query["state"] and query["client_id"] == [CLIENT_ID]
    outcome = await callback(sso, await at_provider(authorize, "ward001"))
    assert set(outcome) == {"sso"}
    answer = await exchange(sso, outcome["sso"])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["user"]["username"] == "ward001"
    # Our token ends no later than the provider's.
    assert 0 < body["expires_in"] <= PROVIDER_TTL_SECS
    async with sso.http(body["access_token"]) as client:
        me = await client.get("/api/v1/me")
    assert me.status_code == 200 and me.json()["id"] == city.ward_user_ids[0]
    assert ("auth.login", "user:ward001") in await audit_actions(sso)
    # The one-time code works once.
    again = await exchange(sso, outcome["sso"])
    assert again.status_code == 401
    assert again.json()["error"]["code"] == "oidc_code_invalid"


async def test_bad_and_replayed_state_are_refused(sso: RunningServer, city: DemoCity) -> None:
    authorize = await start(sso)
    back = await at_provider(authorize, "ward001")
    forged = back.replace("state=", "state=x")
    assert await callback(sso, forged) == {"sso_error": "oidc_state_invalid"}
    first = await callback(sso, back)
    assert "sso" in first
    # The same answer of the provider, sent again.
    assert await callback(sso, back) == {"sso_error": "oidc_state_invalid"}
    assert ("auth.oidc_refused", "oidc") in await audit_actions(sso)


async def test_a_replayed_code_is_refused(sso: RunningServer, city: DemoCity) -> None:
    back = await at_provider(await start(sso), "ward001")
    assert "sso" in await callback(sso, back)
    code = parse_qs(urlsplit(back).query)["code"][0]
    # A new sign-in's state with the code already used.
    state = parse_qs(urlsplit(await start(sso)).query)["state"][0]
    replay = f"{sso.url}/api/v1/auth/oidc/callback?code={code}&state={state}"
    assert await callback(sso, replay) == {"sso_error": "oidc_provider_error"}


async def test_a_wrong_nonce_is_refused(
    sso: RunningServer, city: DemoCity, provider: Provider
) -> None:
    provider.forged_nonce = "not-the-nonce-we-sent"
    assert await sign_in(sso, "ward001") == {"sso_error": "oidc_id_token_invalid"}
    actions = await audit_actions(sso)
    assert ("auth.login", "user:ward001") not in actions


async def test_an_id_token_not_signed_by_the_published_keys_is_refused(
    sso: RunningServer, city: DemoCity, provider: Provider
) -> None:
    provider.forged_key = RSAKey.generate_key(2048, private=True)
    assert await sign_in(sso, "ward001") == {"sso_error": "oidc_id_token_invalid"}


async def test_an_expired_id_token_is_refused(make_server: MakeServer, provider: Provider) -> None:
    # This server's clock is past the end of every ID token the provider signs now.
    clock = ManualClock(datetime.now(UTC) + timedelta(seconds=PROVIDER_TTL_SECS + 3600))
    server = await sso_server(make_server, provider, clock=clock)
    await small_city(server)
    assert await sign_in(server, "ward001") == {"sso_error": "oidc_id_token_invalid"}


async def test_an_unknown_user_is_refused_and_nothing_is_created(
    sso: RunningServer, city: DemoCity
) -> None:
    async with sso.ctx.read() as session:
        before = (await session.execute(select(func.count()).select_from(User))).scalar_one()
    assert await sign_in(sso, "stranger") == {"sso_error": "oidc_no_account"}
    async with sso.ctx.read() as session:
        after = (await session.execute(select(func.count()).select_from(User))).scalar_one()
    assert after == before


async def test_a_disabled_account_is_refused(sso: RunningServer, city: DemoCity) -> None:
    async with sso.ctx.write() as w:
        await w.session.execute(update(User).where(User.username == "ward002").values(active=False))
    assert await sign_in(sso, "ward002") == {"sso_error": "oidc_account_disabled"}


async def test_a_revoked_provider_grant_ends_the_session(
    sso: RunningServer, city: DemoCity, provider: Provider
) -> None:
    outcome = await sign_in(sso, "ward001")
    token = (await exchange(sso, outcome["sso"])).json()["access_token"]
    # Still granted: nothing ends.
    assert await check_sessions(sso.ctx) == 0
    async with sso.http(token) as client:
        assert (await client.get("/api/v1/me")).status_code == 200
    provider.revoke("ward001")
    assert await check_sessions(sso.ctx) == 1
    async with sso.http(token) as client:
        ended = await client.get("/api/v1/me")
    assert ended.status_code == 401
    assert ("auth.oidc_session_ended", f"user:{city.ward_user_ids[0]}") in (
        await audit_actions(sso)
    )


async def test_malformed_exchange_bodies(sso: RunningServer) -> None:
    async with sso.http() as client:
        missing = await client.post("/api/v1/auth/oidc/exchange", json={})
        extra = await client.post("/api/v1/auth/oidc/exchange", json={"code": "x", "user": "admin"})
    for response in (missing, extra):
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_request"


async def test_started_sign_ins_are_bounded(make_server: MakeServer, provider: Provider) -> None:
    clock = ManualClock()
    server = await make_server(
        clock=clock,
        oidc_issuer=provider.url,
        oidc_client_id=CLIENT_ID,
        oidc_redirect_url="http://127.0.0.1:9/",
        oidc_pending_max=2,
    )
    states = []
    for _ in range(3):
        states.append(parse_qs(urlsplit(await start(server)).query)["state"][0])
        await clock.advance(1)
    async with server.ctx.read() as session:
        kept = set((await session.execute(select(OidcLogin.state))).scalars())
    # The oldest started sign-in made room for the newest.
    assert kept == set(states[1:])
    replay = f"{server.url}/api/v1/auth/oidc/callback?code=x&state={states[0]}"
    assert await callback(server, replay) == {"sso_error": "oidc_state_invalid"}


async def clocked_sso(
    make_server: MakeServer, provider: Provider
) -> tuple[RunningServer, ManualClock]:
    # The provider stamps its ID tokens with the real time: this clock starts there.
    clock = ManualClock(datetime.now(UTC))
    server = await sso_server(make_server, provider, clock=clock)
    await small_city(server)
    return server, clock


async def me_status(server: RunningServer, token: str) -> int:
    async with server.http(token) as client:
        return (await client.get("/api/v1/me")).status_code


async def test_the_periodic_check_ends_a_revoked_grant(
    make_server: MakeServer, provider: Provider
) -> None:
    server, clock = await clocked_sso(make_server, provider)
    token = (await exchange(server, (await sign_in(server, "ward001"))["sso"])).json()[
        "access_token"
    ]
    await clock.advance(server.settings.oidc_check_interval_secs)
    assert await me_status(server, token) == 200
    provider.revoke("ward001")
    await clock.advance(server.settings.oidc_check_interval_secs)

    async def refused() -> bool:
        return await me_status(server, token) == 401

    await eventually(refused, "the revoked grant's session to end")


async def test_the_session_ends_with_the_provider_grant(
    make_server: MakeServer, provider: Provider
) -> None:
    server, clock = await clocked_sso(make_server, provider)
    token = (await exchange(server, (await sign_in(server, "ward001"))["sso"])).json()[
        "access_token"
    ]
    assert await me_status(server, token) == 200
    await clock.advance(PROVIDER_TTL_SECS + 1)
    # Our token expired with the provider's, long before our own lifetime.
    assert PROVIDER_TTL_SECS < server.settings.access_token_ttl_secs
    assert await me_status(server, token) == 401
    assert await check_sessions(server.ctx) == 0
    async with server.ctx.read() as session:
        assert (await session.execute(select(OidcLogin))).first() is None


@pytest.mark.parametrize(
    ("asked", "kept"),
    [
        ("/app/chair/?meeting=3", "/app/chair/?meeting=3"),
        ("https://elsewhere.example/app/", None),
        ("//elsewhere.example/app/", None),
        ("/api/v1/me", None),
    ],
)
async def test_the_page_the_user_was_going_to_survives_the_provider(
    sso: RunningServer, city: DemoCity, asked: str, kept: str | None
) -> None:
    authorize = await start(sso, "?" + urlencode({"next": asked}))
    async with httpx.AsyncClient() as client:
        answer = await client.get(await at_provider(authorize, "ward001"))
    location = urlsplit(answer.headers["location"])
    assert parse_qs(location.query).get("next") == ([kept] if kept else None)
    assert "sso=" in location.fragment


async def test_without_introspection_a_refused_refresh_ends_the_session(
    sso: RunningServer, city: DemoCity, provider: Provider
) -> None:
    provider.introspection = False
    token = (await exchange(sso, (await sign_in(sso, "ward001"))["sso"])).json()["access_token"]
    # Each check refreshes (the provider rotates the refresh token): still granted.
    assert await check_sessions(sso.ctx) == 0
    assert await check_sessions(sso.ctx) == 0
    assert await me_status(sso, token) == 200
    provider.revoke("ward001")
    assert await check_sessions(sso.ctx) == 1
    assert await me_status(sso, token) == 401
