"""HTTP routes of polls and ballots: parse, authenticate, call the service."""

from __future__ import annotations

from pydantic import ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meeting.polls import ballot_box, lifecycle, views
from meeting.polls.models import MAX_POLL_TITLE_CHARS
from meeting.polls.rules import PollKind, Rule
from server.http import JSON, Body, context, current_user, path_int, read_json

# A ballot's idempotency key is the tablet's secret for this ballot (a random UUID): the
# receipt is derived from it, so it must be long enough not to be guessed.
MIN_KEY_CHARS = 16
MAX_KEY_CHARS = 200


class PollIn(Body):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=MAX_POLL_TITLE_CHARS)
    agenda_item_id: int | None = None
    kind: PollKind = PollKind.YES_NO_ABSTAIN
    options: list[str] | None = None
    max_choices: int | None = None
    secret: bool = False
    rule: Rule = Rule.MAJORITY_OF_MEMBERS
    duration_secs: int | None = None


class BallotIn(Body):
    model_config = ConfigDict(extra="forbid")

    choice: str | list[str]
    idempotency_key: str = Field(min_length=MIN_KEY_CHARS, max_length=MAX_KEY_CHARS)


async def create_poll(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, PollIn)
    spec = lifecycle.PollSpec(
        title=body.title,
        kind=body.kind,
        rule=body.rule,
        secret=body.secret,
        options=list(body.options or []),
        max_choices=body.max_choices or 1,
        agenda_item_id=body.agenda_item_id,
        duration_secs=body.duration_secs,
    )
    poll = await lifecycle.create_poll(
        context(request), actor, path_int(request, "meeting_id"), spec
    )
    return JSON(poll, status_code=201)


async def list_polls(request: Request) -> Response:
    actor = await current_user(request)
    polls = await views.list_polls(context(request), actor, path_int(request, "meeting_id"))
    return JSON({"polls": polls})


async def get_poll(request: Request) -> Response:
    actor = await current_user(request)
    return JSON(await views.poll_view(context(request), actor, path_int(request, "poll_id")))


async def open_poll(request: Request) -> Response:
    actor = await current_user(request)
    return JSON(await lifecycle.open_poll(context(request), actor, path_int(request, "poll_id")))


async def close_poll(request: Request) -> Response:
    actor = await current_user(request)
    return JSON(await lifecycle.close_poll(context(request), actor, path_int(request, "poll_id")))


async def cast_ballot(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, BallotIn)
    outcome = await ballot_box.cast_ballot(
        context(request), actor, path_int(request, "poll_id"), body.choice, body.idempotency_key
    )
    # A retry gets exactly the first answer: same status, same receipt.
    return JSON({"receipt": outcome.receipt}, status_code=201)


async def check_receipt(request: Request) -> Response:
    actor = await current_user(request)
    receipt = str(request.path_params["receipt"])
    return JSON(
        await views.check_receipt(context(request), actor, path_int(request, "poll_id"), receipt)
    )


routes = [
    Route("/api/v1/meetings/{meeting_id}/polls", create_poll, methods=["POST"]),
    Route("/api/v1/meetings/{meeting_id}/polls", list_polls, methods=["GET"]),
    Route("/api/v1/polls/{poll_id}", get_poll, methods=["GET"]),
    Route("/api/v1/polls/{poll_id}/open", open_poll, methods=["POST"]),
    Route("/api/v1/polls/{poll_id}/close", close_poll, methods=["POST"]),
    Route("/api/v1/polls/{poll_id}/ballots", cast_ballot, methods=["POST"]),
    Route("/api/v1/polls/{poll_id}/receipts/{receipt}", check_receipt, methods=["GET"]),
]
