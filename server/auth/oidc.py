"""Signing in through the city's OpenID provider (authorization code flow with PKCE).

``start`` keeps state, nonce and the PKCE verifier in ``oidc_logins`` (short-lived, bounded)
and sends the browser to the provider. ``callback`` takes the provider's answer once: it
exchanges the code, checks the ID token (signature by the provider's JWKS, issuer,
audience, nonce, times), matches the account by the username claim and hands the sign-in
page a one-time code (in the URL's fragment, never its query) that ``exchange`` turns into
our own token, whose lifetime never exceeds the provider's. ``check_sessions`` asks the
provider periodically whether each grant is still active; a revoked or expired one ends
the user's sessions at once (the token version).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import secrets
import time
import warnings
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import delete, func, select

from server.auth.models import OidcLogin
from server.auth.service import session_answer
from server.context import Context
from server.errors import ApiError, BadRequest, Forbidden, NotFound, Unauthorized
from server.org.models import User
from server.org.service import end_sessions

with warnings.catch_warnings():
    # Authlib prefers the httpx2 package and warns when it falls back to httpx (its own
    # module sets that warning to "always" when imported, hence the order).
    from authlib.deprecate import AuthlibDeprecationWarning

    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

log = logging.getLogger("dienhong.oidc")

# How long the provider's discovery document and signing keys are used before reading again.
METADATA_TTL_SECS = 300
# Algorithms an ID token may be signed with (asymmetric only).
ID_TOKEN_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]
# Tolerated clock difference between the provider and this server.
LEEWAY_SECS = 30
HTTP_TIMEOUT_SECS = 10
# Where the sign-in page lives; the outcome goes in its fragment.
LOGIN_PAGE = "/app/"
# Longest page address kept to go on to after signing in.
NEXT_MAX = 300


def provider_error(message: str) -> ApiError:
    return ApiError(message, code="oidc_provider_error", status=502)


@dataclass
class _Provider:
    metadata: dict[str, Any]
    keys: KeySet
    read_at: float


class OidcClient:
    """The provider's discovery document and keys (cached), and the OAuth 2 client."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._provider: _Provider | None = None
        self._lock = asyncio.Lock()

    def client(self) -> AsyncOAuth2Client:
        settings = self.ctx.settings
        return AsyncOAuth2Client(
            client_id=settings.oidc_client_id,
            client_secret=settings.oidc_client_secret or None,
            # OpenID Connect needs `openid`, whatever else is configured.
            scope=" ".join(dict.fromkeys(("openid", *settings.oidc_scopes))),
            redirect_uri=settings.oidc_redirect_url,
            code_challenge_method="S256",
            token_endpoint_auth_method=(
                "client_secret_basic" if settings.oidc_client_secret else "none"
            ),
            timeout=HTTP_TIMEOUT_SECS,
        )

    async def provider(self, *, fresh: bool = False) -> _Provider:
        async with self._lock:
            known = self._provider
            if (
                known is not None
                and not fresh
                and (time.monotonic() - known.read_at < METADATA_TTL_SECS)
            ):
                return known
            issuer = self.ctx.settings.oidc_issuer.rstrip("/")
            try:
                async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECS) as http:
                    answer = await http.get(f"{issuer}/.well-known/openid-configuration")
                    answer.raise_for_status()
                    metadata = answer.json()
                    keys = await http.get(metadata["jwks_uri"])
                    keys.raise_for_status()
                    key_set = KeySet.import_key_set(keys.json())
            except (httpx.HTTPError, ValueError, KeyError, TypeError, JoseError) as exc:
                raise provider_error(f"The OpenID provider could not be read: {exc}.") from exc
            if metadata.get("issuer", "").rstrip("/") != issuer:
                raise provider_error("The OpenID provider names another issuer.")
            self._provider = _Provider(metadata, key_set, time.monotonic())
            return self._provider


_clients: weakref.WeakKeyDictionary[Context, OidcClient] = weakref.WeakKeyDictionary()


def oidc_client(ctx: Context) -> OidcClient:
    if not ctx.settings.oidc_enabled:
        raise NotFound("Single sign-on is not configured.", code="oidc_not_configured")
    client = _clients.get(ctx)
    if client is None:
        client = _clients[ctx] = OidcClient(ctx)
    return client


def _hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def next_path(value: str | None) -> str | None:
    """A page of this application to go on to after signing in; never an outside address."""
    if not value or len(value) > NEXT_MAX or not value.startswith("/app/"):
        return None
    if value.startswith("//") or "\\" in value or any(ord(c) < 0x21 for c in value):
        return None
    return value


async def start(ctx: Context, next_page: str | None = None) -> str:
    """Remember a new sign-in and answer the provider's authorization URL."""
    oidc = oidc_client(ctx)
    provider = await oidc.provider()
    settings = ctx.settings
    now = ctx.clock.now()
    state = secrets.token_urlsafe(32)
    nonce = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)
    async with ctx.write() as w:
        # Started sign-ins that were never finished go after their time; beyond the
        # limit, the oldest go first.
        await w.session.execute(
            delete(OidcLogin).where(
                OidcLogin.user_id.is_(None),
                OidcLogin.created_at < now - timedelta(seconds=settings.oidc_pending_ttl_secs),
            )
        )
        pending = (
            await w.session.execute(
                select(func.count()).select_from(OidcLogin).where(OidcLogin.user_id.is_(None))
            )
        ).scalar_one()
        excess = pending - settings.oidc_pending_max + 1
        if excess > 0:
            oldest = (
                select(OidcLogin.state)
                .where(OidcLogin.user_id.is_(None))
                .order_by(OidcLogin.created_at)
                .limit(excess)
            )
            await w.session.execute(delete(OidcLogin).where(OidcLogin.state.in_(oldest)))
        w.session.add(
            OidcLogin(
                state=state,
                nonce=nonce,
                code_verifier=verifier,
                created_at=now,
                next_path=next_path(next_page),
            )
        )
    async with oidc.client() as client:
        url, _ = client.create_authorization_url(
            provider.metadata["authorization_endpoint"],
            state=state,
            nonce=nonce,
            code_verifier=verifier,
        )
    return str(url)


async def callback(ctx: Context, params: dict[str, str]) -> str:
    """Finish a sign-in; answer where the browser goes next (the sign-in page, with the
    one-time code or the refusal's code in the fragment)."""
    try:
        handoff, going_to = await _finish(ctx, params)
    except ApiError as exc:
        async with ctx.write() as w:
            await w.audit(
                None, "auth.oidc_refused", "oidc", {"code": exc.code, "message": exc.message[:500]}
            )
        return f"{LOGIN_PAGE}#sso_error={exc.code}"
    # The page to go on to is no secret; the one-time code stays out of the query.
    query = f"?{urlencode({'next': going_to})}" if going_to else ""
    return f"{LOGIN_PAGE}{query}#sso={handoff}"


async def _finish(ctx: Context, params: dict[str, str]) -> tuple[str, str | None]:
    oidc = oidc_client(ctx)
    settings = ctx.settings
    now = ctx.clock.now()
    state = params.get("state", "")
    async with ctx.write() as w:
        row = await w.session.get(OidcLogin, state) if 0 < len(state) <= 64 else None
        fresh = (
            row is not None
            and row.completed_at is None
            and (row.created_at >= now - timedelta(seconds=settings.oidc_pending_ttl_secs))
        )
        if row is None or not fresh:
            raise BadRequest(
                "The sign-in is unknown, expired or already used.", code="oidc_state_invalid"
            )
        # The state is used once, whatever the provider answers.
        row.completed_at = now
        nonce, verifier, going_to = row.nonce, row.code_verifier, row.next_path
    if params.get("error"):
        raise Unauthorized(
            f"The provider refused the sign-in: {params['error'][:100]}.", code="oidc_denied"
        )
    code = params.get("code", "")
    if not code:
        raise BadRequest("The provider's answer has no code.", code="oidc_state_invalid")
    provider = await oidc.provider()
    try:
        async with oidc.client() as client:
            token = await client.fetch_token(
                provider.metadata["token_endpoint"],
                code=code,
                code_verifier=verifier,
                grant_type="authorization_code",
            )
    except (OAuthError, httpx.HTTPError, ValueError) as exc:
        raise provider_error(f"The provider did not exchange the code: {exc}.") from exc
    claims = await _id_token_claims(ctx, oidc, str(token.get("id_token", "")), nonce)
    username = claims.get(settings.oidc_username_claim)
    if not isinstance(username, str) or not username:
        raise Unauthorized(
            f"The ID token has no {settings.oidc_username_claim!r} claim.",
            code="oidc_id_token_invalid",
        )
    expires_at = _provider_expiry(token, claims, now)
    handoff = secrets.token_urlsafe(32)
    async with ctx.read() as session:
        user = (
            await session.execute(select(User).where(User.username == username))
        ).scalar_one_or_none()
    if user is None:
        raise Forbidden(f"No account is named {username!r}.", code="oidc_no_account")
    if not user.active:
        raise Forbidden(f"The account {username!r} is disabled.", code="oidc_account_disabled")
    async with ctx.write() as w:
        row = await w.session.get(OidcLogin, state)
        if row is None:
            raise BadRequest(
                "The sign-in is unknown, expired or already used.", code="oidc_state_invalid"
            )
        row.user_id = user.id
        row.handoff_hash = _hash(handoff)
        row.access_token = str(token.get("access_token") or "") or None
        row.refresh_token = str(token.get("refresh_token") or "") or None
        row.provider_expires_at = expires_at
        await w.audit(user.id, "auth.login", f"user:{username}", {"method": "oidc"})
    return handoff, going_to


def _provider_expiry(
    token: dict[str, Any], claims: dict[str, Any], now: datetime
) -> datetime | None:
    """When the provider's access token ends (else its ID token), by this server's clock."""
    expires_in = token.get("expires_in")
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
        return now + timedelta(seconds=expires_in)
    exp = claims.get("exp")
    if isinstance(exp, int) and not isinstance(exp, bool):
        return datetime.fromtimestamp(exp, tz=UTC)
    return None


async def _id_token_claims(
    ctx: Context, oidc: OidcClient, id_token: str, nonce: str
) -> dict[str, Any]:
    if not id_token:
        raise Unauthorized("The provider sent no ID token.", code="oidc_id_token_invalid")
    provider = await oidc.provider()
    try:
        try:
            decoded = jwt.decode(id_token, provider.keys, algorithms=ID_TOKEN_ALGORITHMS)
        except JoseError:
            # A key the provider added since its keys were read: read them once more.
            provider = await oidc.provider(fresh=True)
            decoded = jwt.decode(id_token, provider.keys, algorithms=ID_TOKEN_ALGORITHMS)
        registry = jwt.JWTClaimsRegistry(
            now=int(ctx.clock.now().timestamp()),
            leeway=LEEWAY_SECS,
            iss={"essential": True, "value": provider.metadata["issuer"]},
            aud={"essential": True, "value": ctx.settings.oidc_client_id},
            sub={"essential": True},
            exp={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        registry.validate(decoded.claims)
    except (JoseError, ValueError) as exc:
        raise Unauthorized(
            f"The ID token was refused: {exc}.", code="oidc_id_token_invalid"
        ) from exc
    return dict(decoded.claims)


async def exchange(ctx: Context, code: str) -> dict[str, Any]:
    """Turn the one-time code of a finished sign-in into our token (once)."""
    settings = ctx.settings
    now = ctx.clock.now()
    async with ctx.write() as w:
        row = (
            await w.session.execute(select(OidcLogin).where(OidcLogin.handoff_hash == _hash(code)))
        ).scalar_one_or_none()
        usable = (
            row is not None
            and row.completed_at is not None
            and (row.completed_at >= now - timedelta(seconds=settings.oidc_pending_ttl_secs))
        )
        if row is not None:
            row.handoff_hash = None
        user = await w.session.get(User, row.user_id) if row and row.user_id else None
        if not usable or row is None or user is None:
            raise Unauthorized(
                "The sign-in code is unknown, used or expired.", code="oidc_code_invalid"
            )
        if not user.active:
            raise Forbidden("The account is disabled.", code="oidc_account_disabled")
        ttl = settings.access_token_ttl_secs
        if row.provider_expires_at is not None:
            ttl = min(ttl, int((row.provider_expires_at - now).total_seconds()))
        if ttl <= 0 or row.ended_at is not None:
            raise Unauthorized("The provider's sign-in has ended.", code="oidc_code_invalid")
    return session_answer(ctx, user, now, ttl=ttl)


async def check_sessions(ctx: Context) -> int:
    """Ask the provider about every active SSO grant; end the sessions of those it no
    longer knows (revoked) and forget those that expired. Answers how many ended."""
    oidc = oidc_client(ctx)
    now = ctx.clock.now()
    async with ctx.read() as session:
        rows = (
            (
                await session.execute(
                    select(OidcLogin).where(
                        OidcLogin.user_id.is_not(None), OidcLogin.ended_at.is_(None)
                    )
                )
            )
            .scalars()
            .all()
        )
    ended = 0
    for row in rows:
        if row.provider_expires_at is not None and row.provider_expires_at <= now:
            # Our tokens of this grant expired with it.
            async with ctx.write() as w:
                await w.session.execute(delete(OidcLogin).where(OidcLogin.state == row.state))
            continue
        try:
            active, renewed = await _grant_active(oidc, row)
        except (OAuthError, httpx.HTTPError, ValueError, ApiError) as exc:
            # The provider is unreachable: nothing is ended on a guess.
            log.warning("could not check an SSO grant at the provider: %s", exc)
            continue
        if active:
            if renewed:
                async with ctx.write() as w:
                    kept = await w.session.get(OidcLogin, row.state)
                    if kept is not None:
                        kept.access_token = renewed.get("access_token") or kept.access_token
                        kept.refresh_token = renewed.get("refresh_token") or kept.refresh_token
            continue
        async with ctx.write() as w:
            user = await w.session.get(User, row.user_id)
            await w.session.execute(delete(OidcLogin).where(OidcLogin.state == row.state))
            if user is not None:
                await end_sessions(w, user, reason="sso_ended")
                await w.audit(None, "auth.oidc_session_ended", f"user:{user.id}", {})
                w.after_commit(functools.partial(ctx.principals.forget, user.id))
        ended += 1
    return ended


async def _grant_active(oidc: OidcClient, row: OidcLogin) -> tuple[bool, dict[str, Any] | None]:
    """Whether the provider still honours the grant (and its renewed tokens, if refreshed).
    Introspection when the provider offers it, else a refresh."""
    provider = await oidc.provider()
    endpoint = provider.metadata.get("introspection_endpoint")
    async with oidc.client() as client:
        if endpoint and row.access_token:
            answer = await client.introspect_token(
                endpoint, token=row.access_token, token_type_hint="access_token"
            )
            answer.raise_for_status()
            return bool(answer.json().get("active")), None
        if row.refresh_token:
            try:
                renewed = await client.fetch_token(
                    provider.metadata["token_endpoint"],
                    grant_type="refresh_token",
                    refresh_token=row.refresh_token,
                )
            except OAuthError as exc:
                if exc.error == "invalid_grant":
                    return False, None
                raise
            return True, dict(renewed)
    # Neither introspection nor refresh: the grant lasts until it expires.
    return True, None


async def check_forever(ctx: Context) -> None:
    while True:
        await ctx.clock.sleep_until(
            ctx.clock.now() + timedelta(seconds=ctx.settings.oidc_check_interval_secs)
        )
        try:
            await check_sessions(ctx)
        except Exception:
            log.exception("checking SSO sessions failed")
