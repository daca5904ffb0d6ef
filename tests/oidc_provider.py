"""An OpenID provider for tests, built with authlib's server components and served by
uvicorn on an ephemeral loopback port: discovery, JWKS, a sign-in form at the
authorization endpoint (code flow, PKCE required, nonce required), the token endpoint and
token introspection. Its accounts, tokens and codes live in memory; a test can revoke a
user's grants or make the next ID token carry another nonce.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlencode

import uvicorn
from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (
    AuthorizationCodeMixin,
    ClientMixin,
    OAuth2Error,
    OAuth2Request,
    TokenMixin,
    grants,
)
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core import UserInfo
from authlib.oidc.core import grants as oidc_grants
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from tests.harness import RunningServer, eventually, free_socket

if TYPE_CHECKING:
    from tests.conftest import MakeServer

CLIENT_ID = "dienhong"
CLIENT_SECRET = "dienhong-secret"
# The password of every account at the provider.
CITY_PASSWORD = "city-sso-password"


@dataclass
class Client(ClientMixin):
    client_id: str
    client_secret: str
    redirect_uris: list[str]

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in scope.split() if s in {"openid", "profile"})

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "client_secret_basic"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in {"authorization_code", "refresh_token"}


@dataclass
class Code(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    username: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


@dataclass
class Token(TokenMixin):
    access_token: str
    refresh_token: str
    client_id: str
    username: str
    scope: str
    issued_at: int
    expires_in: int
    revoked: bool = False

    def check_client(self, client: ClientMixin) -> bool:
        return client.get_client_id() == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.revoked


@dataclass
class User:
    username: str
    password: str


class Request2(OAuth2Request):
    """One HTTP request, its form already read (authlib's grants are synchronous)."""

    def __init__(
        self, method: str, url: str, headers: Headers, query: dict[str, str], form: dict[str, str]
    ) -> None:
        super().__init__(method, url, headers=headers)
        self._args = query
        self._form = form
        self.payload = BasicOAuth2Payload({**query, **form})

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


@dataclass
class Provider:
    """The provider's state, and its uvicorn server once started."""

    redirect_uri: str = ""
    users: dict[str, User] = field(default_factory=dict)
    codes: dict[str, Code] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    access_token_ttl_secs: int = 3600
    # The next ID tokens carry this nonce instead of the one asked for.
    forged_nonce: str | None = None
    # Signs the next ID tokens instead of the published key (same key id).
    forged_key: RSAKey | None = None
    # Whether the discovery document offers token introspection (else clients refresh).
    introspection: bool = True
    key: RSAKey = field(
        default_factory=lambda: RSAKey.generate_key(2048, private=True, auto_kid=True)
    )
    url: str = ""

    def add_user(self, username: str, password: str) -> None:
        self.users[username] = User(username, password)

    def revoke(self, username: str) -> None:
        for token in self.tokens.values():
            if token.username == username:
                token.revoked = True

    async def start(self) -> None:
        sock = free_socket()
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._sock = sock
        self.server = build_server(self)
        self.app = build_app(self)
        self._uvicorn = uvicorn.Server(
            uvicorn.Config(self.app, log_level="warning", lifespan="off")
        )
        self._task = asyncio.create_task(self._uvicorn.serve(sockets=[sock]))
        await eventually(
            lambda: bool(self._uvicorn.started), "the provider to start", interval=0.01
        )

    async def stop(self) -> None:
        self._uvicorn.should_exit = True
        await self._task
        self._sock.close()


def build_server(provider: Provider) -> AuthorizationServer:
    class Server(AuthorizationServer):
        def query_client(self, client_id: str) -> Client | None:
            if client_id != CLIENT_ID:
                return None
            return Client(CLIENT_ID, CLIENT_SECRET, [provider.redirect_uri])

        def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
            provider.tokens[token["access_token"]] = Token(
                access_token=token["access_token"],
                refresh_token=token["refresh_token"],
                client_id=request.client.get_client_id(),
                username=request.user.username,
                scope=token["scope"],
                issued_at=int(time.time()),
                expires_in=token["expires_in"],
            )

        def create_oauth2_request(self, request: Any) -> OAuth2Request:
            return request

        def create_json_request(self, request: Any) -> Any:
            return request

        def handle_response(
            self, status: int, body: Any, headers: list[tuple[str, str]]
        ) -> Response:
            if isinstance(body, dict):
                return JSONResponse(body, status_code=status, headers=dict(headers))
            return Response(body or "", status_code=status, headers=dict(headers))

        def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
            return None

    class CodeGrant(grants.AuthorizationCodeGrant):
        TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic"]

        def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
            data = request.payload.data
            provider.codes[code] = Code(
                code=code,
                client_id=request.client.get_client_id(),
                redirect_uri=data.get("redirect_uri", ""),
                scope=request.payload.scope,
                username=request.user.username,
                nonce=data.get("nonce"),
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
                auth_time=int(time.time()),
            )

        def query_authorization_code(self, code: str, client: ClientMixin) -> Code | None:
            found = provider.codes.get(code)
            if found is not None and found.client_id == client.get_client_id():
                return found
            return None

        def delete_authorization_code(self, authorization_code: Code) -> None:
            provider.codes.pop(authorization_code.code, None)

        def authenticate_user(self, authorization_code: Code) -> User | None:
            return provider.users.get(authorization_code.username)

    class OpenIDCode(oidc_grants.OpenIDCode):
        def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
            return any(code.nonce == nonce for code in provider.codes.values())

        def resolve_client_private_key(self, client: ClientMixin) -> RSAKey:
            return provider.forged_key or provider.key

        def get_client_claims(self, client: ClientMixin) -> dict[str, Any]:
            return {
                "iss": provider.url,
                "aud": [client.get_client_id()],
                "exp": int(time.time()) + provider.access_token_ttl_secs,
            }

        def get_encode_header(self, client: ClientMixin) -> dict[str, str]:
            return {"alg": "RS256", "kid": provider.key.kid}

        def generate_user_info(self, user: User, scope: str) -> UserInfo:
            info = UserInfo(sub=f"sub-{user.username}", preferred_username=user.username)
            if provider.forged_nonce is not None:
                info["nonce"] = provider.forged_nonce
            return info

    class RefreshGrant(grants.RefreshTokenGrant):
        TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic"]
        # Every refresh rotates the refresh token: the old one stops working.
        INCLUDE_NEW_REFRESH_TOKEN = True

        def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
            for token in provider.tokens.values():
                if token.refresh_token == refresh_token and not token.revoked:
                    return token
            return None

        def authenticate_user(self, refresh_token: Token) -> User | None:
            return provider.users.get(refresh_token.username)

        def revoke_old_credential(self, refresh_token: Token) -> None:
            refresh_token.revoked = True

    class Introspection(IntrospectionEndpoint):
        CLIENT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic"]

        def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
            return provider.tokens.get(token_string)

        def introspect_token(self, token: Token) -> dict[str, Any]:
            return {
                "active": True,
                "client_id": token.client_id,
                "token_type": "Bearer",
                "username": token.username,
                "scope": token.scope,
                "exp": token.issued_at + token.expires_in,
                "iat": token.issued_at,
            }

        def check_permission(
            self, token: Token, client: ClientMixin, request: OAuth2Request
        ) -> bool:
            return token.check_client(client)

    def generate_token(
        grant_type: str,
        client: ClientMixin,
        user: Any = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        return {
            "token_type": "Bearer",
            "access_token": secrets.token_urlsafe(24),
            "refresh_token": secrets.token_urlsafe(24),
            "expires_in": provider.access_token_ttl_secs,
            "scope": scope or "",
        }

    server = Server()
    server.register_token_generator("default", generate_token)
    server.register_grant(CodeGrant, [CodeChallenge(required=True), OpenIDCode(require_nonce=True)])
    server.register_grant(RefreshGrant)
    server.register_endpoint(Introspection)
    return server


async def _request(request: Request) -> Request2:
    form: dict[str, str] = {}
    if request.method == "POST":
        form = {key: str(value) for key, value in (await request.form()).items()}
    return Request2(
        request.method, str(request.url), request.headers, dict(request.query_params), form
    )


def build_app(provider: Provider) -> Starlette:
    server: AuthorizationServer = provider.server

    async def discovery(request: Request) -> Response:
        base = provider.url
        return JSONResponse(
            {
                "issuer": base,
                "authorization_endpoint": f"{base}/authorize",
                "token_endpoint": f"{base}/token",
                "jwks_uri": f"{base}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
            }
            | ({"introspection_endpoint": f"{base}/introspect"} if provider.introspection else {})
        )

    async def jwks(request: Request) -> Response:
        return JSONResponse({"keys": [provider.key.as_dict(private=False)]})

    def form_page(params: dict[str, str], message: str = "") -> HTMLResponse:
        action = "/authorize?" + urlencode(params)
        text = (
            f"<!doctype html><html><body><h1>City SSO</h1><p id='message'>{message}</p>"
            f"<form method='post' action='{action}'>"
            "<label>User <input name='username' id='sso-username'></label>"
            "<label>Password <input name='password' type='password' id='sso-password'>"
            "</label><button type='submit' id='sso-submit'>Sign in</button>"
            "</form></body></html>"
        )
        return HTMLResponse(text)

    async def authorize(request: Request) -> Response:
        req = await _request(request)
        try:
            grant = server.get_consent_grant(req)
        except OAuth2Error as error:
            return JSONResponse(dict(error.get_body()), status_code=400)
        if request.method == "GET":
            return form_page(req.args)
        user = provider.users.get(req.form.get("username", ""))
        if user is None or not secrets.compare_digest(user.password, req.form.get("password", "")):
            return form_page(req.args, "Wrong username or password.")
        req.user = user
        response: Response = server.create_authorization_response(req, grant_user=user, grant=grant)
        return response

    async def token(request: Request) -> Response:
        response: Response = server.create_token_response(await _request(request))
        return response

    async def introspect(request: Request) -> Response:
        response: Response = server.create_endpoint_response(
            "introspection", await _request(request)
        )
        return response

    return Starlette(
        routes=[
            Route("/.well-known/openid-configuration", discovery, methods=["GET"]),
            Route("/jwks", jwks, methods=["GET"]),
            Route("/authorize", authorize, methods=["GET", "POST"]),
            Route("/token", token, methods=["POST"]),
            Route("/introspect", introspect, methods=["POST"]),
        ]
    )


async def sso_server(
    make_server: MakeServer, provider: Provider, clock: Any = None
) -> RunningServer:
    """A server that signs in through ``provider``."""
    server = await make_server(
        clock=clock,
        oidc_issuer=provider.url,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
        oidc_redirect_url="http://127.0.0.1:9/",
    )
    # The server's address is known once it is made: its callback is registered then.
    callback = f"{server.url}/api/v1/auth/oidc/callback"
    server.ctx.settings = server.settings.with_overrides(oidc_redirect_url=callback)
    provider.redirect_uri = callback
    return server
