"""Access tokens: every forged, stale or incomplete token is refused with 401."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, generate_private_key

from server.auth.tokens import TokenService
from server.clock import ManualClock
from server.errors import Unauthorized
from server.settings import Settings
from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.harness import RunningServer
from tests.server.support import b64url, ed25519_pem, small_city, unsigned_token

SSO_ISSUER = "https://sso.example.test/realms/hdnd"


def claims_for(server: RunningServer, user_id: int, **changes: Any) -> dict[str, Any]:
    now = server.ctx.clock.now()
    claims: dict[str, Any] = {
        "iss": server.settings.jwt_issuer,
        "aud": server.settings.jwt_audience,
        "sub": str(user_id),
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(hours=1)).timestamp()),
    }
    claims.update(changes)
    return {key: value for key, value in claims.items() if value is not None}


def hs256(secret: bytes, claims: dict[str, Any]) -> str:
    """An HS256 token made by hand (PyJWT refuses to use a public key as an HMAC secret)."""
    signing_input = (
        f"{b64url(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}."
        f"{b64url(json.dumps(claims).encode())}"
    )
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


async def status_of(server: RunningServer, token: str) -> tuple[int, str]:
    async with server.http(token) as client:
        response = await client.get("/api/v1/me")
    code = response.json()["error"]["code"] if response.status_code != 200 else ""
    return response.status_code, code


async def socket_close_code(server: RunningServer, token: str) -> int | None:
    async with websockets.connect(server.ws_url) as ws:
        await ws.send(json.dumps({"op": "auth", "token": token}))
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
    assert ws.close_code is not None
    return ws.close_code


async def test_our_own_token_signed_with_the_configured_key(make_server: MakeServer) -> None:
    key, pem = ed25519_pem()
    server = await make_server(jwt_private_key=pem)
    city = await small_city(server)
    token = jwt.encode(claims_for(server, city.ward_user_ids[0]), key, algorithm="EdDSA")
    assert await status_of(server, token) == (200, "")


async def test_forged_and_incomplete_tokens_are_refused(make_server: MakeServer) -> None:
    key, pem = ed25519_pem()
    server = await make_server(jwt_private_key=pem)
    city = await small_city(server)
    user = city.ward_user_ids[0]
    other_key, _ = ed25519_pem()
    public = key.public_key()
    raw_public = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pem_public = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    good = claims_for(server, user)
    forged = {
        "bad signature": jwt.encode(good, other_key, algorithm="EdDSA"),
        "alg none": unsigned_token({"alg": "none", "typ": "JWT"}, good),
        "alg None": unsigned_token({"alg": "None", "typ": "JWT"}, good),
        "HS256 with the raw public key": hs256(raw_public, good),
        "HS256 with the PEM public key": hs256(pem_public, good),
        "wrong audience": jwt.encode(
            claims_for(server, user, aud="someone-else"), key, algorithm="EdDSA"
        ),
        "wrong issuer": jwt.encode(claims_for(server, user, iss="evil"), key, algorithm="EdDSA"),
        "not yet valid": jwt.encode(
            claims_for(server, user, nbf=int(server.ctx.clock.now().timestamp()) + 3600),
            key,
            algorithm="EdDSA",
        ),
        "subject not a user id": jwt.encode(
            claims_for(server, user, sub="ward001"), key, algorithm="EdDSA"
        ),
        "subject of nobody": jwt.encode(claims_for(server, 999_999), key, algorithm="EdDSA"),
        "garbage": "not.a.token",
    }
    for claim in ("iss", "aud", "exp", "sub"):
        forged[f"no {claim}"] = jwt.encode(
            claims_for(server, user, **{claim: None}), key, algorithm="EdDSA"
        )
    for name, token in forged.items():
        status, code = await status_of(server, token)
        assert status == 401, name
        assert code in {"invalid_token", "token_expired"}, (name, code)
    # The same tokens on the socket: closed with 4401.
    for name in ("alg none", "HS256 with the raw public key", "wrong audience", "no exp"):
        assert await socket_close_code(server, forged[name]) == 4401, name
    # And the good token still works after all that.
    assert await status_of(server, jwt.encode(good, key, algorithm="EdDSA")) == (200, "")


async def verdict(tokens: TokenService, token: str) -> tuple[str, Any]:
    """What ``verify`` says of a token: its claims, or the refusal's code and message."""
    now = datetime.fromtimestamp(1_900_000_000, UTC)
    try:
        return "accepted", (await tokens.verify(token, now)).claims
    except Unauthorized as exc:
        return exc.code, exc.message


async def test_tokens_shaped_as_ours_are_judged_as_pyjwt_judges_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tokens shaped exactly as we issue them skip PyJWT's general path: every verdict on
    them, and on tokens that look almost like them, is the one PyJWT gives."""
    key, pem = ed25519_pem()
    other_key, _ = ed25519_pem()
    settings = Settings(jwt_private_key=pem, token_cache_size=0)
    issued_at = 1_900_000_000
    good = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": "7",
        "iat": issued_at,
        "exp": issued_at + 3600,
    }

    def signed(claims: dict[str, Any], signer: Any = key, **headers: Any) -> str:
        return jwt.encode(claims, signer, algorithm="EdDSA", headers=headers or None)

    ours = signed(good)
    head, payload, signature = ours.split(".")
    tampered = dict(good, sub="8")
    cases = {
        "ours": ours,
        "bad signature": signed(good, other_key),
        "payload swapped": f"{head}.{b64url(json.dumps(tampered).encode())}.{signature}",
        "signature cut": f"{head}.{payload}.{signature[:-4]}",
        "padded signature": f"{ours}==",
        "junk in the signature": f"{head}.{payload}.{signature[:10]}!{signature[10:]}",
        "four segments": f"{ours}.{signature}",
        "wrong audience": signed(dict(good, aud="someone-else")),
        "audience list": signed(dict(good, aud=[settings.jwt_audience, "other"])),
        "wrong issuer": signed(dict(good, iss="evil")),
        "subject a number": signed(dict(good, sub=7)),
        "jti a number": signed(dict(good, jti=5)),
        "no exp": signed({k: v for k, v in good.items() if k != "exp"}),
        "exp null": signed(dict(good, exp=None)),
        "expired": signed(dict(good, exp=issued_at - 10)),
        "claims not an object": f"{head}.{b64url(b'[1, 2]')}.{signature}",
        "another header": signed(good, kid="k1"),
    }
    lean = TokenService(settings)
    verdicts = {name: await verdict(lean, token) for name, token in cases.items()}
    assert verdicts["ours"] == ("accepted", good)
    assert verdicts["bad signature"] == (
        "invalid_token",
        "The token was refused: Signature verification failed.",
    )
    assert verdicts["another header"] == ("accepted", good)
    assert verdicts["audience list"][0] == "accepted"
    for name in ("wrong audience", "wrong issuer", "no exp", "subject a number", "jti a number"):
        assert verdicts[name][0] == "invalid_token", name

    # The same tokens through PyJWT alone.
    async def lean_path_declines(self: TokenService, token: str) -> None:
        return None

    monkeypatch.setattr(TokenService, "_decode_ours", lean_path_declines)
    general = TokenService(settings)
    for name, token in cases.items():
        assert await verdict(general, token) == verdicts[name], name

    # And our own shape really takes the lean path (PyJWT's decode is never called).
    monkeypatch.undo()

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("PyJWT's general path was taken")

    monkeypatch.setattr(jwt, "decode", refuse)
    assert await verdict(TokenService(settings), ours) == ("accepted", good)


async def test_missing_or_malformed_authorization_header(server: RunningServer) -> None:
    async with server.http() as client:
        none = await client.get("/api/v1/me")
        basic = await client.get("/api/v1/me", headers={"Authorization": "Basic abc"})
    for response in (none, basic):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "missing_token"


async def test_token_expires_on_the_injected_clock(make_server: MakeServer) -> None:
    clock = ManualClock()
    server = await make_server(clock=clock, access_token_ttl_secs=600)
    await small_city(server)
    token = await server.login("ward001", DEMO_PASSWORD)
    await clock.advance(599)
    assert await status_of(server, token) == (200, "")
    await clock.advance(2)
    assert await status_of(server, token) == (401, "token_expired")
    assert await socket_close_code(server, token) == 4401


async def test_tokens_issued_when_the_clock_is_ahead_of_the_machine(
    make_server: MakeServer,
) -> None:
    clock = ManualClock()
    server = await make_server(clock=clock)
    await small_city(server)
    await clock.advance(30 * 24 * 3600)
    token = await server.login("ward001", DEMO_PASSWORD)
    assert await status_of(server, token) == (200, "")


# --- an external SSO issuer ---------------------------------------------------------


def rsa_key() -> tuple[RSAPrivateKey, str]:
    key = generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return key, public_pem


def sso_claims(server: RunningServer, **changes: Any) -> dict[str, Any]:
    now = server.ctx.clock.now()
    claims: dict[str, Any] = {
        "iss": SSO_ISSUER,
        "aud": "dienhong-sso",
        "sub": "f3b1c2d4-0000-4000-8000-000000000001",
        "preferred_username": "ward002",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
    }
    claims.update(changes)
    return {key: value for key, value in claims.items() if value is not None}


async def test_sso_token_with_a_public_key_maps_to_the_user(make_server: MakeServer) -> None:
    key, public_pem = rsa_key()
    server = await make_server(
        sso_issuer=SSO_ISSUER, sso_public_key=public_pem, sso_audience="dienhong-sso"
    )
    city = await small_city(server)
    token = jwt.encode(sso_claims(server), key, algorithm="RS256")
    async with server.http(token) as client:
        me = await client.get("/api/v1/me")
    assert me.status_code == 200 and me.json()["id"] == city.ward_user_ids[1]
    async with server.socket(token) as ws:
        assert ws.ready["user_id"] == city.ward_user_ids[1]

    other_key, _ = rsa_key()
    refused = {
        "unknown user": jwt.encode(
            sso_claims(server, preferred_username="nobody"), key, algorithm="RS256"
        ),
        "no username": jwt.encode(
            sso_claims(server, preferred_username=None), key, algorithm="RS256"
        ),
        "other key": jwt.encode(sso_claims(server), other_key, algorithm="RS256"),
        "wrong audience": jwt.encode(sso_claims(server, aud="dienhong"), key, algorithm="RS256"),
        "expired": jwt.encode(
            sso_claims(server, exp=int(server.ctx.clock.now().timestamp()) - 120),
            key,
            algorithm="RS256",
        ),
        "HS256 with the public key": hs256(public_pem.encode(), sso_claims(server)),
        "alg none": unsigned_token({"alg": "none"}, sso_claims(server)),
    }
    for name, forged in refused.items():
        assert (await status_of(server, forged))[0] == 401, name


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, RSAPrivateKey]]:
    """A tiny JWKS endpoint on 127.0.0.1 publishing one RSA key with kid ``k1``."""
    key, _ = rsa_key()
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    body = json.dumps({"keys": [jwk | {"kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/jwks.json", key
    httpd.shutdown()
    httpd.server_close()
    thread.join()


async def test_sso_token_checked_against_a_jwks_url(
    make_server: MakeServer, jwks_server: tuple[str, RSAPrivateKey]
) -> None:
    url, key = jwks_server
    server = await make_server(sso_issuer=SSO_ISSUER, sso_jwks_url=url, sso_audience="dienhong-sso")
    city = await small_city(server)
    token = jwt.encode(sso_claims(server), key, algorithm="RS256", headers={"kid": "k1"})
    async with server.http(token) as client:
        me = await client.get("/api/v1/me")
    assert me.status_code == 200 and me.json()["id"] == city.ward_user_ids[1]
    other_key, _ = rsa_key()
    unknown_kid = jwt.encode(
        sso_claims(server), other_key, algorithm="RS256", headers={"kid": "k2"}
    )
    wrong_key = jwt.encode(sso_claims(server), other_key, algorithm="RS256", headers={"kid": "k1"})
    assert (await status_of(server, unknown_kid))[0] == 401
    assert (await status_of(server, wrong_key))[0] == 401
