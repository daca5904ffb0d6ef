"""HTTP routes of signing: the minutes' signature steps, sealed vote result sheets,
instructions issued as signed official documents."""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from messaging import official
from messaging.directive_routes import DirectiveBody
from server.http import JSON, Body, context, current_user, path_int, read_json
from server.signing import minutes, results

# Token PINs are short; a longer value is a mistake, never a PIN.
MAX_PIN_CHARS = 64
MAX_NUMBER_CHARS = 50


class OfficialBody(DirectiveBody):
    # The document's number as printed ("12/TB-HĐND").
    number: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NUMBER_CHARS)
    ]
    pin: Annotated[str, StringConstraints(min_length=1, max_length=MAX_PIN_CHARS)]


class SignBody(Body):
    pin: Annotated[str, StringConstraints(min_length=1, max_length=MAX_PIN_CHARS)] | None = None


async def minutes_signatures(request: Request) -> Response:
    actor = await current_user(request)
    return JSON(
        await minutes.minutes_status(context(request), actor, path_int(request, "meeting_id"))
    )


async def sign_minutes(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, SignBody)
    status = await minutes.sign_minutes(
        context(request), actor, path_int(request, "meeting_id"), body.pin
    )
    return JSON(status, status_code=201)


async def poll_result_pdf(request: Request) -> Response:
    actor = await current_user(request)
    poll_id = path_int(request, "poll_id")
    document = await results.sealed_result(context(request), actor, poll_id)
    return Response(
        document,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="ket-qua-bieu-quyet-{poll_id}.pdf"'},
    )


async def issue_official(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, OfficialBody)
    issued = await official.issue_official(
        context(request),
        actor,
        number=body.number,
        pin=body.pin,
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
    return JSON(issued, status_code=201)


routes: list[BaseRoute] = [
    Route("/api/v1/directives/official", issue_official, methods=["POST"]),
    Route("/api/v1/polls/{poll_id}/result.pdf", poll_result_pdf, methods=["GET"]),
    Route("/api/v1/meetings/{meeting_id}/minutes/signatures", minutes_signatures, methods=["GET"]),
    Route("/api/v1/meetings/{meeting_id}/minutes/signatures", sign_minutes, methods=["POST"]),
]
