"""Signalling over the meeting API, and the floor recordings."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from meeting.media import service
from meeting.media.engine import JoinKind
from server.errors import NotFound
from server.http import JSON, Body, context, current_user, path_int, read_json

# An SDP offer of a browser with audio and video is a few kilobytes.
MAX_SDP_CHARS = 64_000


class Offer(Body):
    model_config = ConfigDict(extra="forbid")

    sdp: str = Field(min_length=1, max_length=MAX_SDP_CHARS)
    type: Literal["offer"]
    # Who joins: a remote participant, the hall's sound desk, or a viewer (the projector).
    kind: JoinKind = "participant"


async def join_media(request: Request) -> Response:
    principal = await current_user(request)
    meeting_id = path_int(request, "meeting_id")
    offer = await read_json(request, Offer)
    answer = await service.do_join(context(request), principal, meeting_id, offer.sdp, offer.kind)
    return JSON(answer, status_code=201)


class Mute(Body):
    model_config = ConfigDict(extra="forbid", strict=True)

    muted: bool


async def mute_media(request: Request) -> Response:
    principal = await current_user(request)
    meeting_id = path_int(request, "meeting_id")
    session_id = request.path_params["session_id"]
    body = await read_json(request, Mute)
    entry = await service.do_mute(context(request), principal, meeting_id, session_id, body.muted)
    return JSON({"participant": entry})


async def request_unmute(request: Request) -> Response:
    principal = await current_user(request)
    meeting_id = path_int(request, "meeting_id")
    session_id = request.path_params["session_id"]
    entry = await service.do_request_unmute(context(request), principal, meeting_id, session_id)
    return JSON({"participant": entry})


async def leave_media(request: Request) -> Response:
    principal = await current_user(request)
    meeting_id = path_int(request, "meeting_id")
    session_id = request.path_params["session_id"]
    await service.do_leave(context(request), principal, meeting_id, session_id)
    return Response(status_code=204)


async def recordings(request: Request) -> Response:
    principal = await current_user(request)
    meeting_id = path_int(request, "meeting_id")
    listed = await service.require_listing_access(context(request), principal, meeting_id)
    return JSON({"recordings": listed})


async def recording(request: Request) -> Response:
    principal = await current_user(request)
    meeting_id = path_int(request, "meeting_id")
    recording_id = path_int(request, "recording_id")
    path = await service.recording_file(context(request), principal, meeting_id, recording_id)
    if not path.is_file():
        raise NotFound(
            f"The file of recording {recording_id} is missing.", code="recording_not_found"
        )
    return FileResponse(
        path, media_type="audio/ogg", filename=f"meeting-{meeting_id}-recording-{recording_id}.ogg"
    )


routes = [
    Route("/api/v1/meetings/{meeting_id}/media", join_media, methods=["POST"]),
    Route("/api/v1/meetings/{meeting_id}/media/{session_id}", leave_media, methods=["DELETE"]),
    Route("/api/v1/meetings/{meeting_id}/media/{session_id}/mute", mute_media, methods=["POST"]),
    Route(
        "/api/v1/meetings/{meeting_id}/media/{session_id}/unmute-request",
        request_unmute,
        methods=["POST"],
    ),
    Route("/api/v1/meetings/{meeting_id}/recordings", recordings, methods=["GET"]),
    Route("/api/v1/meetings/{meeting_id}/recordings/{recording_id}", recording, methods=["GET"]),
]
