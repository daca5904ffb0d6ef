"""What every route shares: strict JSON bodies, the current user, JSON answers."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import bindparam, select
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse

from server.auth.principal import PRINCIPAL_COLUMNS, Principal
from server.context import Context
from server.errors import BadRequest, PayloadTooLarge, Unauthorized
from server.org.models import User

ModelT = TypeVar("ModelT", bound=BaseModel)


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
        return json.dumps(content, ensure_ascii=False, separators=(",", ":"),
                          default=_jsonable).encode()


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
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadRequest(f"The body is not valid JSON: {exc}.", code="invalid_json") from exc
    if not isinstance(raw, dict):
        raise BadRequest("The body must be a JSON object.", code="invalid_json")
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
            code="invalid_request", details=problems,
        ) from exc


def bearer_token(conn: HTTPConnection) -> str:
    header = conn.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Send 'Authorization: Bearer <token>'.", code="missing_token")
    return token.strip()


_PRINCIPAL_BY_ID = select(*PRINCIPAL_COLUMNS).where(User.id == bindparam("user_id"))
_PRINCIPAL_BY_USERNAME = select(*PRINCIPAL_COLUMNS).where(
    User.username == bindparam("username"))


async def principal_for_token(ctx: Context, token: str) -> Principal:
    """The active user a valid token names (ours by id, the SSO issuer's by username).

    Recently seen users come from ``ctx.principals`` (see ``PrincipalCache`` for how long a
    change can take to show); the others are read with one statement.
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
        row = await ctx.db.read_row(_PRINCIPAL_BY_ID, {"user_id": verified.user_id})
    else:
        row = await ctx.db.read_row(_PRINCIPAL_BY_USERNAME, {"username": verified.username})
    if row is None or not row.active:
        raise Unauthorized("The token names no active user.", code="invalid_token")
    principal = Principal.of_row(row)
    cache.put(principal, ticket)
    return _of_current_version(principal, verified.user_id, verified.claims)


def _of_current_version(principal: Principal, user_id: int | None,
                        claims: dict[str, Any]) -> Principal:
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


def path_int(request: Request, name: str) -> int:
    raw = request.path_params[name]
    if isinstance(raw, int):
        return raw
    try:
        return int(raw)
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"{name} must be an integer.", code="invalid_id") from exc
