"""HTTP routes of directives: issue, boxes, read, ack, receipts (JSON and CSV), replies."""

from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, ConfigDict, Field, StringConstraints
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from messaging import directives, receipts, receipts_export, replies
from messaging.models import Urgency
from server.http import JSON, Body, context, current_user, path_int, query_int, read_json
from server.org.models import Confidentiality

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
FileIds = Annotated[list[int], Field(default_factory=list, max_length=50)]


class Strict(Body):
    model_config = ConfigDict(extra="forbid")


class TargetsBody(Strict):
    unit_ids: list[int] = Field(max_length=10_000)
    include_descendants: bool = False


class DirectiveBody(Strict):
    title: Title
    body: str
    urgency: Urgency
    confidentiality: Confidentiality = Confidentiality.NONE
    targets: TargetsBody
    ack_required: bool = True
    due_at: AwareDatetime | None = None
    attachment_ids: FileIds


class AckBody(Strict):
    note: str | None = None
    # Only the recipient itself may acknowledge; naming anyone else is refused.
    user_id: int | None = None


class ReplyBody(Strict):
    body: Annotated[str, StringConstraints(min_length=1)]
    attachment_ids: FileIds
    # The sender side says which unit's thread it answers in.
    unit_id: int | None = None


async def issue(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, DirectiveBody)
    issued = await directives.issue_directive(
        context(request),
        actor,
        title=body.title,
        body=body.body,
        urgency=body.urgency,
        confidentiality=body.confidentiality,
        unit_ids=body.targets.unit_ids,
        include_descendants=body.targets.include_descendants,
        ack_required=body.ack_required,
        due_at=body.due_at,
        attachment_ids=body.attachment_ids,
    )
    return JSON(
        {"id": issued.id, "recipient_count": issued.recipient_count, "left_out": issued.left_out},
        status_code=201,
    )


async def box(request: Request) -> Response:
    actor = await current_user(request)
    rows = await directives.list_box(
        context(request),
        actor,
        request.query_params.get("box", "inbox"),
        limit=query_int(request, "limit", 50) or 50,
        before_id=query_int(request, "before_id"),
    )
    return JSON({"directives": rows})


async def show(request: Request) -> Response:
    actor = await current_user(request)
    return JSON(
        await directives.get_directive(context(request), actor, path_int(request, "directive_id"))
    )


async def read(request: Request) -> Response:
    actor = await current_user(request)
    return JSON(
        await receipts.mark_read(context(request), actor, path_int(request, "directive_id"))
    )


async def ack(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, AckBody)
    return JSON(
        await receipts.acknowledge(
            context(request),
            actor,
            path_int(request, "directive_id"),
            note=body.note,
            user_id=body.user_id,
        )
    )


async def receipts_json(request: Request) -> Response:
    actor = await current_user(request)
    return JSON(
        await receipts.receipts_report(context(request), actor, path_int(request, "directive_id"))
    )


async def receipts_csv(request: Request) -> Response:
    actor = await current_user(request)
    directive_id = path_int(request, "directive_id")
    data = await receipts_export.receipts_csv(context(request), actor, directive_id)
    return Response(
        data,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="directive-{directive_id}-receipts.csv"'
        },
    )


async def post_reply(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, ReplyBody)
    reply = await replies.post_reply(
        context(request),
        actor,
        path_int(request, "directive_id"),
        body=body.body,
        attachment_ids=body.attachment_ids,
        unit_id=body.unit_id,
    )
    return JSON(reply, status_code=201)


async def list_replies(request: Request) -> Response:
    actor = await current_user(request)
    rows = await replies.list_replies(
        context(request),
        actor,
        path_int(request, "directive_id"),
        unit_id=query_int(request, "unit_id"),
    )
    return JSON({"replies": rows})


routes = [
    Route("/api/v1/directives", issue, methods=["POST"]),
    Route("/api/v1/directives", box, methods=["GET"]),
    Route("/api/v1/directives/{directive_id}", show, methods=["GET"]),
    Route("/api/v1/directives/{directive_id}/read", read, methods=["POST"]),
    Route("/api/v1/directives/{directive_id}/ack", ack, methods=["POST"]),
    Route("/api/v1/directives/{directive_id}/receipts", receipts_json, methods=["GET"]),
    Route("/api/v1/directives/{directive_id}/receipts.csv", receipts_csv, methods=["GET"]),
    Route("/api/v1/directives/{directive_id}/replies", post_reply, methods=["POST"]),
    Route("/api/v1/directives/{directive_id}/replies", list_replies, methods=["GET"]),
]
