"""HTTP routes of signing: the minutes' signature steps, sealed vote result sheets."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from server.http import JSON, context, current_user, path_int, read_json
from server.signing import minutes, results

# Token PINs are short; a longer value is a mistake, never a PIN.
MAX_PIN_CHARS = 64


class SignBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pin: Annotated[str, StringConstraints(min_length=1, max_length=MAX_PIN_CHARS)] | None = None


async def minutes_signatures(request: Request) -> Response:
    actor = await current_user(request)
    return JSON(await minutes.minutes_status(context(request), actor,
                                             path_int(request, "meeting_id")))


async def sign_minutes(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, SignBody)
    status = await minutes.sign_minutes(context(request), actor,
                                        path_int(request, "meeting_id"), body.pin)
    return JSON(status, status_code=201)


async def poll_result_pdf(request: Request) -> Response:
    actor = await current_user(request)
    poll_id = path_int(request, "poll_id")
    document = await results.sealed_result(context(request), actor, poll_id)
    return Response(document, media_type="application/pdf", headers={
        "Content-Disposition": f'inline; filename="ket-qua-bieu-quyet-{poll_id}.pdf"'})


routes: list[BaseRoute] = [
    Route("/api/v1/polls/{poll_id}/result.pdf", poll_result_pdf, methods=["GET"]),
    Route("/api/v1/meetings/{meeting_id}/minutes/signatures", minutes_signatures,
          methods=["GET"]),
    Route("/api/v1/meetings/{meeting_id}/minutes/signatures", sign_minutes, methods=["POST"]),
]
