"""HTTP routes of meeting preparation: candidates, publishing the agenda, copying."""

from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, StringConstraints
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meeting import preparation, preparation_preload
from meeting.meetings import meeting_state
from server.errors import BadRequest
from server.http import JSON, Body, context, current_user, path_int, read_json
from server.org.models import Role


class CopyBody(Body):
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
    starts_at: AwareDatetime


async def list_candidates(request: Request) -> Response:
    actor = await current_user(request)
    params = request.query_params
    q = params.get("q", "").strip()
    if len(q) > 200:
        raise BadRequest("q has at most 200 characters.", code="invalid_query")
    try:
        role = Role(params["role"]) if params.get("role") else None
    except ValueError as exc:
        raise BadRequest(
            f"role is one of {[r.value for r in Role]}.", code="invalid_query"
        ) from exc
    raw_unit = params.get("unit_id", "")
    if raw_unit and (not raw_unit.isdigit() or not 1 <= int(raw_unit) <= 2**31 - 1):
        raise BadRequest("unit_id must be a unit's id.", code="invalid_query")
    return JSON(
        await preparation.candidates(
            context(request), actor, q=q, role=role, unit_id=int(raw_unit) if raw_unit else None
        )
    )


async def publish(request: Request) -> Response:
    actor = await current_user(request)
    return JSON(
        await preparation.publish_agenda(context(request), actor, path_int(request, "meeting_id"))
    )


async def preload(request: Request) -> Response:
    """Ask every participant's tablet to download the meeting's documents now."""
    actor = await current_user(request)
    return JSON(
        await preparation_preload.request_preload(
            context(request), actor, path_int(request, "meeting_id")
        )
    )


async def copy(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, CopyBody)
    ctx = context(request)
    made = await preparation.copy_meeting(
        ctx, actor, path_int(request, "meeting_id"), title=body.title, starts_at=body.starts_at
    )
    return JSON(await meeting_state(ctx, made.id, actor), status_code=201)


routes = [
    Route("/api/v1/meeting-candidates", list_candidates, methods=["GET"]),
    Route("/api/v1/meetings/{meeting_id}/publish", publish, methods=["POST"]),
    Route("/api/v1/meetings/{meeting_id}/preload", preload, methods=["POST"]),
    Route("/api/v1/meetings/{meeting_id}/copy", copy, methods=["POST"]),
]
