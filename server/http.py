"""What every route shares: strict JSON bodies, the current user, JSON answers."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from sqlalchemy import bindparam, select
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import Match

from server.auth.principal import PRINCIPAL_COLUMNS, Principal
from server.context import Context
from server.errors import BadRequest, PayloadTooLarge, Unauthorized
from server.org.models import User

ModelT = TypeVar("ModelT", bound=BaseModel)

# Ids are INTEGER columns (32 bits on PostgreSQL): a larger id names nothing and would
# overflow the database driver, so it is refused as malformed.
MAX_ID = 2**31 - 1
# Integers in a body must fit a signed 64-bit column (SQLite's INTEGER, PostgreSQL's BIGINT).
MAX_JSON_INT = 2**63 - 1
# Times outside these years are typing errors, and near year 1 or 9999 the arithmetic on
# them (time zones, deadlines) overflows ``datetime``.
MIN_YEAR = 1900
MAX_YEAR = 2999
# A lone UTF-16 surrogate (from a JSON escape such as "\ud800") cannot be stored as UTF-8.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_surrogate(text: str) -> bool:
    return _SURROGATE.search(text) is not None


def _date_in_range(value: date) -> bool:
    return MIN_YEAR <= value.year <= MAX_YEAR


def _implausible(value: Any) -> str | None:
    """What in ``value`` (a model's fields, nested) no column can take, or None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, date):
            if not _date_in_range(item):
                return f"the time {item.isoformat()} is outside the years {MIN_YEAR}-{MAX_YEAR}"
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if not -MAX_ID - 1 <= item <= MAX_ID:
                return f"the number {item} is outside -{MAX_ID + 1} to {MAX_ID}"
        elif isinstance(item, BaseModel):
            stack.extend(getattr(item, name) for name in type(item).model_fields)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return None


class Body(BaseModel):
    """The base of every request body: unknown fields are refused, values fit the columns.

    ``read_json`` refuses what no model could hold (too deep, integers beyond 64 bits,
    lone surrogates) before a model sees the body; this base refuses integers beyond the
    32-bit columns of PostgreSQL and implausible times, in every route's model alike.
    """

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _fits_the_columns(self) -> Body:
        problem = _implausible(self)
        if problem is not None:
            raise ValueError(problem)
        return self


def body_model(endpoint: Callable[..., Any]) -> type[Body] | None:
    """The body model an endpoint reads with ``read_json``, found by its name in the code.

    Used to describe routes (OpenAPI) and to test them; an endpoint reads at most one body.
    """
    code = getattr(endpoint, "__code__", None)
    namespace = getattr(endpoint, "__globals__", {})
    if code is None:
        return None
    for name in code.co_names + code.co_freevars:
        found = namespace.get(name)
        if isinstance(found, type) and issubclass(found, Body) and found is not Body:
            return found
    return None


def context(conn: HTTPConnection) -> Context:
    ctx: Context = conn.app.state.ctx
    return ctx


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class JSON(JSONResponse):
    """JSON answers keep Vietnamese text readable and accept datetimes."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, ensure_ascii=False, separators=(",", ":"), default=_jsonable
        ).encode()


async def read_json(request: Request, model: type[ModelT]) -> ModelT:
    """Parse the body strictly into ``model``: 400 for anything malformed, 413 if too big."""
    limit = context(request).settings.max_json_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The request body is over {limit} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise PayloadTooLarge(f"The request body is over {limit} bytes.")
    if not body:
        raw: Any = {}
    else:
        try:
            raw = json.loads(body)
        except RecursionError as exc:
            raise BadRequest("The body is nested too deeply.", code="invalid_json") from exc
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, too many digits
            raise BadRequest(f"The body is not valid JSON: {exc}.", code="invalid_json") from exc
    if not isinstance(raw, dict):
        raise BadRequest("The body must be a JSON object.", code="invalid_json")
    check_json_values(raw, context(request).settings.max_json_depth)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
            for err in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        first = problems[0]
        raise BadRequest(
            f"Invalid field {first['field']!r}: {first['message']}.",
            code="invalid_request",
            details=problems,
        ) from exc


def check_json_values(raw: Any, max_depth: int) -> None:
    """Refuse what no body model may hold: too deep, too large integers, lone surrogates."""
    stack: list[tuple[Any, int]] = [(raw, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise BadRequest(
                    f"The body is nested deeper than {max_depth} levels.", code="invalid_json"
                )
            if isinstance(item, dict):
                for key, value in item.items():
                    if _has_surrogate(key):
                        raise BadRequest(
                            "A field name is not valid Unicode text.", code="invalid_json"
                        )
                    stack.append((value, depth + 1))
            else:
                stack.extend((value, depth + 1) for value in item)
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if not -MAX_JSON_INT - 1 <= item <= MAX_JSON_INT:
                raise BadRequest(
                    "An integer in the body does not fit 64 bits.", code="invalid_json"
                )
        elif isinstance(item, float):
            if item != item or item in (float("inf"), float("-inf")):
                raise BadRequest("A number in the body is not finite.", code="invalid_json")
        elif isinstance(item, str) and _has_surrogate(item):
            raise BadRequest(
                "A text in the body is not valid Unicode (a lone surrogate).", code="invalid_json"
            )


def bearer_token(conn: HTTPConnection) -> str:
    header = conn.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Send 'Authorization: Bearer <token>'.", code="missing_token")
    return token.strip()


_PRINCIPAL_BY_USERNAME = select(*PRINCIPAL_COLUMNS).where(User.username == bindparam("username"))


async def principal_for_token(ctx: Context, token: str) -> Principal:
    """The active user a valid token names (ours by id, the SSO issuer's by username).

    Recently seen users come from ``ctx.principals`` (see ``PrincipalCache`` for how long a
    change can take to show); the others are read with one statement (by id, shared by
    everyone who asks at the same time).
    """
    verified = await ctx.tokens.verify(token, ctx.clock.now())
    cache = ctx.principals
    if verified.user_id is not None:
        cached = cache.get(verified.user_id)
    else:
        cached = cache.get_by_username(verified.username or "")
    newer = verified.claims.get("ver", 0)
    if cached is not None and isinstance(newer, int) and newer > cached.token_version:
        # A token issued after the cached read (a new password): read the user again.
        cached = None
    if cached is not None:
        return _of_current_version(cached, verified.user_id, verified.claims)
    ticket = cache.ticket()
    if verified.user_id is not None:
        row = await ctx.principal_rows.get(verified.user_id)
    else:
        row = await ctx.db.read_row(_PRINCIPAL_BY_USERNAME, {"username": verified.username})
    if row is None or not row.active:
        raise Unauthorized("The token names no active user.", code="invalid_token")
    principal = Principal.of_row(row)
    cache.put(principal, ticket)
    return _of_current_version(principal, verified.user_id, verified.claims)


def _of_current_version(
    principal: Principal, user_id: int | None, claims: dict[str, Any]
) -> Principal:
    # Our tokens end when the user's token version moves on (see server/auth/service.py).
    if user_id is not None and not principal.accepts(claims):
        raise Unauthorized("The token was revoked; sign in again.", code="token_revoked")
    return principal


async def current_user(request: HTTPConnection) -> Principal:
    """Authenticate the request; remembers the principal for audit of refusals."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    principal = await principal_for_token(context(request), bearer_token(request))
    request.state.principal = principal
    return principal


def _bounded_int(raw: str, low: int, high: int) -> int | None:
    """``raw`` as an int in [low, high], or None; never parses a huge digit string."""
    text = raw.strip()
    digits = text.removeprefix("-").removeprefix("+")
    if not digits.isascii() or not digits.isdigit() or len(digits) > len(str(MAX_JSON_INT)):
        return None
    value = int(text)
    return value if low <= value <= high else None


def path_int(request: Request, name: str) -> int:
    """A path parameter that is an id (or a page number): 400 unless it fits 32 bits.

    Zero and negative numbers pass and name nothing (404 from the service).
    """
    raw = request.path_params[name]
    value = raw if isinstance(raw, int) else _bounded_int(str(raw), -MAX_ID - 1, MAX_ID)
    if value is None or not -MAX_ID - 1 <= value <= MAX_ID:
        raise BadRequest(f"{name} must be a whole number up to {MAX_ID}.", code="invalid_id")
    return value


def query_int(
    request: Request,
    name: str,
    default: int | None = None,
    *,
    low: int = -MAX_ID - 1,
    high: int = MAX_ID,
) -> int | None:
    """An integer query parameter in [low, high]; absent or empty gives ``default``."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    value = _bounded_int(raw, low, high)
    if value is None:
        raise BadRequest(
            f"{name} must be a whole number from {low} to {high}.", code="invalid_request"
        )
    return value


# The pages load only their own scripts, styles, fonts and images (page images arrive as
# blob: URLs fetched with the token); nothing may frame them, nor run inline script.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "font-src 'self'; connect-src 'self'; media-src 'self' blob:; worker-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# An API answer is data, never a document: it loads nothing and is never framed.
API_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)


class SecurityHeaders:
    """Adds the security headers to every HTTP answer: pages, static files and the API.

    A route that sets its own Content-Security-Policy (a served file: ``sandbox``) keeps it.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        csp = (
            API_CSP if path.startswith("/api/") or path in ("/metrics", "/healthz") else PAGE_CSP
        ).encode()

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _value in headers}
                for name, value in (*SECURITY_HEADERS, (b"content-security-policy", csp)):
                    if name not in present:
                        headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def route_path(conn: HTTPConnection) -> str:
    """The path template of the route that answers ``conn`` ("unmatched" if none).

    Logs and audit records name the template: a path can carry a ballot receipt.
    """
    for route in conn.app.router.routes:
        match, _child = route.matches(conn.scope)
        if match is Match.FULL:
            return str(getattr(route, "path", "unmatched"))
    return "unmatched"
