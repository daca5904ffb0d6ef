"""HTTP routes of meetings: parse, authenticate, call the service, answer JSON."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from pydantic import AwareDatetime, ConfigDict, Field, StrictBool, StringConstraints
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from meeting import agenda, attendance, meetings, presentation, speakers
from meeting import annotations as page_marks
from meeting.models import (
    MAX_PLACE_CHARS,
    MAX_REASON_CHARS,
    MAX_TITLE_CHARS,
    AnnotationKind,
    MeetingState,
    ParticipantRole,
    SpeakerKind,
)
from server.errors import BadRequest
from server.files.storage import discard
from server.http import JSON, Body, context, current_user, path_int, read_json

Title = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TITLE_CHARS)
]
Place = Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_PLACE_CHARS)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_REASON_CHARS)]
Id = Annotated[int, Field(ge=1, le=2**31 - 1)]
Ids = Annotated[list[Id], Field(max_length=5000)]
# Longest speech limit a meeting may set: two hours.
MAX_SPEECH_LIMIT_SECS = 7200


class Strict(Body):
    model_config = ConfigDict(extra="forbid", strict=True)


class QuorumBody(Strict):
    numerator: Annotated[int, Field(ge=1, le=1000)]
    denominator: Annotated[int, Field(ge=1, le=1000)]


QuorumField = QuorumBody | Annotated[str, StringConstraints(max_length=64)] | None


def _rule(raw: QuorumField) -> meetings.QuorumRule | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        rule = meetings.NAMED_QUORUM_RULES.get(raw)
        if rule is None:
            raise BadRequest(
                f"Unknown quorum rule {raw!r}; use one of "
                f"{sorted(meetings.NAMED_QUORUM_RULES)} or "
                "{numerator, denominator}.",
                code="invalid_request",
            )
        return rule
    return meetings.QuorumRule(raw.numerator, raw.denominator)


class MeetingBody(Strict):
    model_config = ConfigDict(extra="forbid", strict=False)

    title: Title
    starts_at: AwareDatetime
    place: Place = ""
    chair_ids: Ids
    delegate_ids: Ids
    secretary_ids: Ids = Field(default_factory=list)
    guest_ids: Ids = Field(default_factory=list)
    speech_limit_secs: Annotated[int, Field(ge=10, le=MAX_SPEECH_LIMIT_SECS)] | None = None
    quorum: QuorumField = None


class MeetingPatch(Strict):
    model_config = ConfigDict(extra="forbid", strict=False)

    title: Title | None = None
    starts_at: AwareDatetime | None = None
    place: Place | None = None
    speech_limit_secs: Annotated[int, Field(ge=10, le=MAX_SPEECH_LIMIT_SECS)] | None = None
    quorum: QuorumField = None
    # Whether delegates attending remotely count toward the quorum.
    remote_counts_for_quorum: StrictBool | None = None


class AgendaBody(Strict):
    title: Title
    document_ids: Ids = Field(default_factory=list)
    parent_id: Id | None = None
    planned_minutes: Annotated[int, Field(ge=0, le=24 * 60)] = 0
    position: Annotated[int, Field(ge=0)] | None = None


class AgendaPatch(Strict):
    title: Title | None = None
    document_ids: Ids | None = None
    planned_minutes: Annotated[int, Field(ge=0, le=24 * 60)] | None = None


class ReorderAgendaBody(Strict):
    parent_id: Id | None = None
    item_ids: Ids


class CurrentItemBody(Strict):
    agenda_item_id: Id | None


class PresentationBody(Strict):
    agenda_item_id: Id
    document_id: Id
    page: Annotated[int, Field(ge=1, le=1_000_000)]


class PresenterBody(Strict):
    user_id: Id | None


class AttendanceBody(Strict):
    present: bool
    user_id: Id | None = None
    reason: Reason = ""


class SpeakerBody(Strict):
    model_config = ConfigDict(extra="forbid", strict=False)

    kind: SpeakerKind = SpeakerKind.SPEECH


class ReorderSpeakersBody(Strict):
    speaker_ids: Ids


async def create_meeting(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, MeetingBody)
    ctx = context(request)
    meeting = await meetings.create_meeting(
        ctx,
        actor,
        title=body.title,
        starts_at=body.starts_at,
        place=body.place,
        chair_ids=body.chair_ids,
        delegate_ids=body.delegate_ids,
        secretary_ids=body.secretary_ids,
        guest_ids=body.guest_ids,
        speech_limit_secs=body.speech_limit_secs,
        quorum_rule=_rule(body.quorum),
    )
    return JSON(await meetings.meeting_state(ctx, meeting.id, actor), status_code=201)


async def list_meetings(request: Request) -> Response:
    actor = await current_user(request)
    return JSON({"meetings": await meetings.my_meetings(context(request), actor)})


async def get_meeting(request: Request) -> Response:
    actor = await current_user(request)
    return JSON(
        await meetings.meeting_state(context(request), path_int(request, "meeting_id"), actor)
    )


async def patch_meeting(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, MeetingPatch)
    ctx = context(request)
    meeting_id = path_int(request, "meeting_id")
    await meetings.update_meeting(
        ctx,
        actor,
        meeting_id,
        title=body.title,
        starts_at=body.starts_at,
        place=body.place,
        speech_limit_secs=body.speech_limit_secs,
        quorum_rule=_rule(body.quorum),
        remote_counts_for_quorum=body.remote_counts_for_quorum,
    )
    return JSON(await meetings.meeting_state(ctx, meeting_id, actor))


def _transition(target: MeetingState) -> Any:
    async def endpoint(request: Request) -> Response:
        actor = await current_user(request)
        await read_json(request, Strict)
        result = await meetings.change_state(
            context(request), actor, path_int(request, "meeting_id"), target
        )
        return JSON(result)

    endpoint.__name__ = f"meeting_{target.value}"
    return endpoint


async def add_agenda_item(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, AgendaBody)
    item = await agenda.add_item(
        context(request),
        actor,
        path_int(request, "meeting_id"),
        title=body.title,
        document_ids=body.document_ids,
        parent_id=body.parent_id,
        planned_minutes=body.planned_minutes,
        position=body.position,
    )
    return JSON(item, status_code=201)


async def patch_agenda_item(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, AgendaPatch)
    item = await agenda.update_item(
        context(request),
        actor,
        path_int(request, "meeting_id"),
        path_int(request, "item_id"),
        title=body.title,
        document_ids=body.document_ids,
        planned_minutes=body.planned_minutes,
    )
    return JSON(item)


async def delete_agenda_item(request: Request) -> Response:
    actor = await current_user(request)
    await agenda.remove_item(
        context(request), actor, path_int(request, "meeting_id"), path_int(request, "item_id")
    )
    return Response(status_code=204)


async def reorder_agenda(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, ReorderAgendaBody)
    tree = await agenda.reorder_items(
        context(request),
        actor,
        path_int(request, "meeting_id"),
        parent_id=body.parent_id,
        item_ids=body.item_ids,
    )
    return JSON({"agenda": tree})


async def current_agenda_item(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, CurrentItemBody)
    await agenda.set_current_item(
        context(request), actor, path_int(request, "meeting_id"), body.agenda_item_id
    )
    return JSON({"agenda_item_id": body.agenda_item_id})


async def present(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, PresentationBody)
    shown = await presentation.present(
        context(request),
        actor,
        path_int(request, "meeting_id"),
        agenda_item_id=body.agenda_item_id,
        document_id=body.document_id,
        page=body.page,
    )
    return JSON(shown)


async def name_presenter(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, PresenterBody)
    await presentation.name_presenter(
        context(request), actor, path_int(request, "meeting_id"), body.user_id
    )
    return JSON({"presenter_id": body.user_id})


async def record_attendance(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, AttendanceBody)
    result = await attendance.record_attendance(
        context(request),
        actor,
        path_int(request, "meeting_id"),
        present=body.present,
        user_id=body.user_id,
        reason=body.reason,
    )
    return JSON(result)


async def request_floor(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, SpeakerBody)
    entry = await speakers.request_floor(
        context(request), actor, path_int(request, "meeting_id"), body.kind
    )
    return JSON(entry, status_code=201)


async def withdraw_request(request: Request) -> Response:
    actor = await current_user(request)
    await speakers.withdraw(
        context(request), actor, path_int(request, "meeting_id"), path_int(request, "speaker_id")
    )
    return Response(status_code=204)


async def grant_floor(request: Request) -> Response:
    actor = await current_user(request)
    await read_json(request, Strict)
    entry = await speakers.grant(
        context(request), actor, path_int(request, "meeting_id"), path_int(request, "speaker_id")
    )
    return JSON(entry)


async def finish_speech(request: Request) -> Response:
    actor = await current_user(request)
    await read_json(request, Strict)
    await speakers.finish(
        context(request), actor, path_int(request, "meeting_id"), path_int(request, "speaker_id")
    )
    return Response(status_code=204)


async def reorder_speakers(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, ReorderSpeakersBody)
    result = await speakers.reorder(
        context(request), actor, path_int(request, "meeting_id"), body.speaker_ids
    )
    return JSON(result)


class ParticipantBody(Strict):
    model_config = ConfigDict(extra="forbid", strict=False)

    role: ParticipantRole


async def put_participant(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, ParticipantBody)
    ctx = context(request)
    meeting_id = path_int(request, "meeting_id")
    await meetings.set_participant(ctx, actor, meeting_id, path_int(request, "user_id"), body.role)
    return JSON(await meetings.meeting_state(ctx, meeting_id, actor))


async def delete_participant(request: Request) -> Response:
    actor = await current_user(request)
    await meetings.set_participant(
        context(request), actor, path_int(request, "meeting_id"), path_int(request, "user_id"), None
    )
    return Response(status_code=204)


class AnnotationBody(Body):
    model_config = ConfigDict(extra="forbid", strict=False)

    page: Annotated[int, Field(ge=1, le=1_000_000, strict=True)]
    kind: AnnotationKind
    data: dict[str, Any]
    shared: Annotated[bool, Field(strict=True)] = False
    meeting_id: Annotated[int, Field(ge=1, le=2**31 - 1, strict=True)] | None = None
    # The writer's own id (a tablet's offline queue): resending it answers the stored one.
    client_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{8,64}$", strict=True)] | None = None


async def add_annotation(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, AnnotationBody)
    result, created = await page_marks.add_annotation(
        context(request),
        actor,
        path_int(request, "file_id"),
        page=body.page,
        kind=body.kind,
        data=body.data,
        shared=body.shared,
        meeting_id=body.meeting_id,
        client_id=body.client_id,
    )
    return JSON(result, status_code=201 if created else 200)


async def list_annotations(request: Request) -> Response:
    actor = await current_user(request)
    rows = await page_marks.list_annotations(context(request), actor, path_int(request, "file_id"))
    return JSON({"annotations": rows})


async def delete_annotation(request: Request) -> Response:
    actor = await current_user(request)
    await page_marks.delete_annotation(
        context(request), actor, path_int(request, "file_id"), path_int(request, "annotation_id")
    )
    return Response(status_code=204)


async def annotated_pdf(request: Request) -> Response:
    actor = await current_user(request)
    flag = request.query_params.get("shared", "0").lower()
    if flag not in ("0", "1", "true", "false"):
        raise BadRequest("shared is 0/1 or true/false.", code="invalid_request")
    pdf, f = await page_marks.annotated_pdf(
        context(request), actor, path_int(request, "file_id"), include_shared=flag in ("1", "true")
    )
    stem = (f.name.rsplit(".", 1)[0] if f.name else f"file-{f.id}") or f"file-{f.id}"
    filename = quote(f"{stem}-annotated.pdf")
    return FileResponse(
        pdf,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{filename}",
            "Cache-Control": "private, no-store",
        },
        background=BackgroundTask(discard, pdf),
    )


BASE = "/api/v1/meetings"
FILES = "/api/v1/files"

routes = [
    Route(BASE, create_meeting, methods=["POST"]),
    Route(BASE, list_meetings, methods=["GET"]),
    Route(BASE + "/{meeting_id}", get_meeting, methods=["GET"]),
    Route(BASE + "/{meeting_id}", patch_meeting, methods=["PATCH"]),
    Route(BASE + "/{meeting_id}/start", _transition(MeetingState.IN_SESSION), methods=["POST"]),
    Route(BASE + "/{meeting_id}/adjourn", _transition(MeetingState.ADJOURNED), methods=["POST"]),
    Route(BASE + "/{meeting_id}/close", _transition(MeetingState.CLOSED), methods=["POST"]),
    Route(BASE + "/{meeting_id}/participants/{user_id}", put_participant, methods=["PUT"]),
    Route(BASE + "/{meeting_id}/participants/{user_id}", delete_participant, methods=["DELETE"]),
    Route(BASE + "/{meeting_id}/agenda", add_agenda_item, methods=["POST"]),
    Route(BASE + "/{meeting_id}/agenda/reorder", reorder_agenda, methods=["POST"]),
    Route(BASE + "/{meeting_id}/agenda/current", current_agenda_item, methods=["POST"]),
    Route(BASE + "/{meeting_id}/agenda/{item_id}", patch_agenda_item, methods=["PATCH"]),
    Route(BASE + "/{meeting_id}/agenda/{item_id}", delete_agenda_item, methods=["DELETE"]),
    Route(BASE + "/{meeting_id}/presentation", present, methods=["POST"]),
    Route(BASE + "/{meeting_id}/presenter", name_presenter, methods=["POST"]),
    Route(BASE + "/{meeting_id}/attendance", record_attendance, methods=["POST"]),
    Route(BASE + "/{meeting_id}/speakers", request_floor, methods=["POST"]),
    Route(BASE + "/{meeting_id}/speakers/reorder", reorder_speakers, methods=["POST"]),
    Route(BASE + "/{meeting_id}/speakers/{speaker_id}/grant", grant_floor, methods=["POST"]),
    Route(BASE + "/{meeting_id}/speakers/{speaker_id}/finish", finish_speech, methods=["POST"]),
    Route(BASE + "/{meeting_id}/speakers/{speaker_id}", withdraw_request, methods=["DELETE"]),
    Route(FILES + "/{file_id}/annotations", add_annotation, methods=["POST"]),
    Route(FILES + "/{file_id}/annotations", list_annotations, methods=["GET"]),
    Route(FILES + "/{file_id}/annotations/{annotation_id}", delete_annotation, methods=["DELETE"]),
    Route(FILES + "/{file_id}/annotated.pdf", annotated_pdf, methods=["GET"]),
]
