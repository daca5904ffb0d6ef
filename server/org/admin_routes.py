"""HTTP routes of the administration: account search, bulk import, sessions and sign-in
throttles, the audit viewer, and a user's own password."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import StringConstraints
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from server.auth.service import change_own_password
from server.errors import BadRequest, PayloadTooLarge
from server.http import JSON, Body, context, current_user, path_int, read_json
from server.org import admin, audit_log, service
from server.org.models import Role

# The largest page of a list; a page of 200 accounts still renders at once.
MAX_PER_PAGE = 200
# Page numbers beyond this are refused rather than turned into huge offsets.
MAX_PAGE = 1_000_000


class Strict(Body):
    pass


class PasswordChange(Strict):
    current_password: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    new_password: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class PasswordReset(Strict):
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]


def _int(request: Request, name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise BadRequest(f"{name} must be an integer from {low} to {high}.", code="invalid_query")
    return int(raw)


def _paging(request: Request) -> tuple[int, int]:
    page = _int(request, "page", 1, 1, MAX_PAGE)
    per_page = _int(request, "per_page", 50, 1, MAX_PER_PAGE)
    assert page is not None and per_page is not None
    return page, per_page


def _time(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise BadRequest(
            f"{name} must be an ISO 8601 time with offset.", code="invalid_query"
        ) from exc
    if value.tzinfo is None:
        raise BadRequest(f"{name} must carry its offset from UTC.", code="invalid_query")
    return value


def _text(request: Request, name: str, limit: int = 200) -> str:
    value = request.query_params.get(name, "").strip()
    if len(value) > limit:
        raise BadRequest(f"{name} has at most {limit} characters.", code="invalid_query")
    return value


async def search_users(request: Request) -> Response:
    actor = await current_user(request)
    role_name = _text(request, "role")
    try:
        role = Role(role_name) if role_name else None
    except ValueError as exc:
        raise BadRequest(
            f"role is one of {[r.value for r in Role]}.", code="invalid_query"
        ) from exc
    active_raw = request.query_params.get("active", "")
    if active_raw not in ("", "true", "false"):
        raise BadRequest("active is true or false.", code="invalid_query")
    page, per_page = _paging(request)
    return JSON(
        await admin.search_users(
            context(request),
            actor,
            q=_text(request, "q"),
            unit_id=_int(request, "unit_id", None, 1, 2**31 - 1),
            role=role,
            active=None if not active_raw else active_raw == "true",
            page=page,
            per_page=per_page,
        )
    )


async def import_accounts(request: Request) -> Response:
    actor = await current_user(request)
    ctx = context(request)
    flag = request.query_params.get("dry_run", "false")
    if flag not in ("true", "false"):
        raise BadRequest("dry_run is true or false.", code="invalid_query")
    service.require_admin(actor)
    limit = ctx.settings.import_max_bytes
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise PayloadTooLarge(f"An import file has at most {limit} bytes.")
    answer = await admin.import_accounts(ctx, actor, bytes(body), dry_run=flag == "true")
    return JSON(answer, status_code=200 if flag == "true" else 201)


async def reset_password(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, PasswordReset)
    user = await service.update_user(
        context(request), actor, path_int(request, "user_id"), password=body.password
    )
    return JSON(service.user_json(user) | {"must_change_password": True})


async def sign_out_everywhere(request: Request) -> Response:
    actor = await current_user(request)
    user = await service.sign_out_everywhere(context(request), actor, path_int(request, "user_id"))
    return JSON(service.user_json(user))


async def lift_throttle(request: Request) -> Response:
    actor = await current_user(request)
    lifted = await service.lift_sign_in_throttle(
        context(request), actor, path_int(request, "user_id")
    )
    return JSON({"lifted": lifted})


async def change_password(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, PasswordChange)
    return JSON(
        await change_own_password(context(request), actor, body.current_password, body.new_password)
    )


def _audit_filters(request: Request) -> dict[str, object]:
    return {
        "since": _time(request, "since"),
        "until": _time(request, "until"),
        "actor_id": _int(request, "actor_id", None, 1, 2**31 - 1),
        "action": _text(request, "action", 64),
        "subject": _text(request, "subject", 120),
    }


async def audit_records(request: Request) -> Response:
    actor = await current_user(request)
    page, per_page = _paging(request)
    return JSON(
        await audit_log.audit_page(
            context(request), actor, page=page, per_page=per_page, **_audit_filters(request)
        )
    )


async def audit_chain(request: Request) -> Response:
    actor = await current_user(request)
    return JSON(await audit_log.chain_status(context(request), actor))


async def audit_export(request: Request) -> Response:
    actor = await current_user(request)
    fmt = request.query_params.get("format", "csv")
    if fmt not in ("csv", "json"):
        raise BadRequest("format is csv or json.", code="invalid_query")
    audit_log.require_auditor(actor)
    filters = _audit_filters(request)
    lines = audit_log.export_records(context(request), actor, fmt=fmt, **filters)  # type: ignore[arg-type]
    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
    name = f"audit.{'csv' if fmt == 'csv' else 'jsonl'}"
    return StreamingResponse(
        lines, media_type=media, headers={"content-disposition": f'attachment; filename="{name}"'}
    )


routes = [
    Route("/api/v1/admin/users", search_users, methods=["GET"]),
    Route("/api/v1/admin/import", import_accounts, methods=["POST"]),
    Route("/api/v1/users/{user_id}/password-reset", reset_password, methods=["POST"]),
    Route("/api/v1/users/{user_id}/sign-out-everywhere", sign_out_everywhere, methods=["POST"]),
    Route("/api/v1/users/{user_id}/sign-in-throttle", lift_throttle, methods=["DELETE"]),
    Route("/api/v1/me/password", change_password, methods=["POST"]),
    Route("/api/v1/audit", audit_records, methods=["GET"]),
    Route("/api/v1/audit/chain", audit_chain, methods=["GET"]),
    Route("/api/v1/audit/export", audit_export, methods=["GET"]),
]
