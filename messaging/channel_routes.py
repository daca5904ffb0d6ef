"""HTTP routes of channels and messages, unit presence, and search."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from messaging import channel_writer, channels, presence, search
from messaging.models import ChannelKind
from server.errors import BadRequest
from server.http import (
    JSON,
    MAX_ID,
    Body,
    context,
    current_user,
    path_int,
    query_int,
    read_json,
)

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
ClientMsgId = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class Strict(Body):
    model_config = ConfigDict(extra="forbid")


class ChannelBody(Strict):
    name: Name | None = None
    kind: Literal["group", "direct"]
    member_ids: list[int] = Field(max_length=1000)


class MessageBody(Strict):
    body: str
    client_msg_id: ClientMsgId
    reply_to: int | None = None
    attachment_ids: list[int] = Field(default_factory=list, max_length=20)


class EditBody(Strict):
    body: str


class ReadBody(Strict):
    seq: int = Field(ge=0)


async def create_channel(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, ChannelBody)
    channel, created = await channels.create_channel(
        context(request),
        actor,
        name=body.name,
        kind=ChannelKind(body.kind),
        members=body.member_ids,
    )
    return JSON(channel, status_code=201 if created else 200)


async def list_channels(request: Request) -> Response:
    actor = await current_user(request)
    return JSON({"channels": await channels.list_channels(context(request), actor)})


async def show_channel(request: Request) -> Response:
    actor = await current_user(request)
    return JSON(
        await channels.get_channel(context(request), actor, path_int(request, "channel_id"))
    )


async def post_message(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, MessageBody)
    message, created = await channel_writer.post_message(
        context(request),
        actor,
        path_int(request, "channel_id"),
        body=body.body,
        client_msg_id=body.client_msg_id,
        reply_to=body.reply_to,
        attachment_ids=body.attachment_ids,
    )
    return JSON(message, status_code=201 if created else 200)


async def list_messages(request: Request) -> Response:
    actor = await current_user(request)
    rows = await channels.history(
        context(request),
        actor,
        path_int(request, "channel_id"),
        after_seq=query_int(request, "after_seq"),
        before_seq=query_int(request, "before_seq"),
        limit=query_int(request, "limit", 50) or 50,
    )
    return JSON({"messages": rows})


async def edit_message(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, EditBody)
    return JSON(
        await channel_writer.edit_message(
            context(request),
            actor,
            path_int(request, "channel_id"),
            path_int(request, "message_id"),
            body=body.body,
        )
    )


async def retract_message(request: Request) -> Response:
    actor = await current_user(request)
    return JSON(
        await channels.retract_message(
            context(request),
            actor,
            path_int(request, "channel_id"),
            path_int(request, "message_id"),
        )
    )


async def mark_read(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, ReadBody)
    return JSON(
        await channels.mark_read(context(request), actor, path_int(request, "channel_id"), body.seq)
    )


async def unit_presence(request: Request) -> Response:
    actor = await current_user(request)
    return JSON(await presence.unit_presence(context(request), actor, path_int(request, "unit_id")))


async def people_presence(request: Request) -> Response:
    actor = await current_user(request)
    raw = request.query_params.get("user_ids", "")
    try:
        user_ids = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError as exc:
        raise BadRequest(
            "user_ids is a comma-separated list of integers.", code="invalid_request"
        ) from exc
    if any(not 0 < uid <= MAX_ID for uid in user_ids):
        raise BadRequest(f"user_ids are positive integers up to {MAX_ID}.", code="invalid_request")
    return JSON(await presence.contacts_presence(context(request), actor, user_ids))


async def search_route(request: Request) -> Response:
    actor = await current_user(request)
    results = await search.search(
        context(request),
        actor,
        request.query_params.get("q", ""),
        limit=query_int(request, "limit", search.MAX_RESULTS) or search.MAX_RESULTS,
    )
    return JSON({"results": results})


routes = [
    Route("/api/v1/channels", create_channel, methods=["POST"]),
    Route("/api/v1/channels", list_channels, methods=["GET"]),
    Route("/api/v1/channels/{channel_id}", show_channel, methods=["GET"]),
    Route("/api/v1/channels/{channel_id}/messages", post_message, methods=["POST"]),
    Route("/api/v1/channels/{channel_id}/messages", list_messages, methods=["GET"]),
    Route("/api/v1/channels/{channel_id}/messages/{message_id}", edit_message, methods=["PATCH"]),
    Route(
        "/api/v1/channels/{channel_id}/messages/{message_id}", retract_message, methods=["DELETE"]
    ),
    Route(
        "/api/v1/channels/{channel_id}/messages/{message_id}/retract",
        retract_message,
        methods=["POST"],
    ),
    Route("/api/v1/channels/{channel_id}/read", mark_read, methods=["POST"]),
    Route("/api/v1/units/{unit_id}/presence", unit_presence, methods=["GET"]),
    Route("/api/v1/presence", people_presence, methods=["GET"]),
    Route("/api/v1/search", search_route, methods=["GET"]),
]
