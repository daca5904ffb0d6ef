"""The event types of meetings, as a contract (``server.realtime.contract``): all go on
``meeting:{id}``. Only fields every emitter sets are declared; payloads may hold more."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from server.realtime.contract import OMIT, EventType, builds, payload

if TYPE_CHECKING:
    from server.context import Write
    from server.realtime.log import Event


def _meeting(
    name: str,
    description: str,
    fields: dict[str, str] | None = None,
    optional: dict[str, str] | None = None,
) -> EventType:
    return EventType(name, "meeting", description, fields or {}, optional or {})


# A speaker event carries the queue as it is after the change, and the speaker it is about.
_SPEAKER = {"speakers": "object"}
_ABOUT_SPEAKER = {"speaker_id": "integer", "user_id": "integer", "kind": "string"}

EVENT_TYPES = (
    _meeting(
        "meeting.created",
        "The meeting was made (opens its topic).",
        {"id": "integer", "title": "string", "state": "string"},
    ),
    _meeting(
        "meeting.updated",
        "Title, time, place, speech limit or quorum rule changed.",
        {"quorum": "object"},
    ),
    _meeting(
        "meeting.state_changed",
        "The session started, adjourned or closed.",
        {
            "state": "string",
            "previous": "string",
            "at": "string",
            "started_at": "string|null",
            "closed_at": "string|null",
        },
    ),
    _meeting(
        "participants.changed",
        "A participant was added, changed role or removed.",
        {"user_id": "integer", "participants": "array", "quorum": "object"},
    ),
    _meeting(
        "attendance.changed",
        "A participant checked in or was marked absent.",
        {"user_id": "integer", "participant": "object", "quorum": "object"},
    ),
    _meeting("agenda.changed", "The agenda as it is now.", {"agenda": "array"}),
    _meeting(
        "agenda.published",
        "The agenda was sent to every participant.",
        {"agenda": "array", "published_at": "string"},
    ),
    _meeting(
        "agenda.current_changed", "The item under discussion.", {"agenda_item_id": "integer|null"}
    ),
    _meeting(
        "presentation.changed",
        "The document page everyone follows (or none).",
        {"presentation": "object|null"},
    ),
    _meeting("presenter.changed", "Who drives the presentation.", {"presenter_id": "integer|null"}),
    _meeting(
        "annotation.shared", "An annotation was shared with the meeting.", {"annotation": "object"}
    ),
    _meeting(
        "annotation.removed",
        "A shared annotation was removed.",
        {"annotation_id": "integer", "file_id": "integer"},
    ),
    _meeting("speaker.requested", "A request for the floor.", _SPEAKER, _ABOUT_SPEAKER),
    _meeting(
        "speaker.withdrawn", "A request for the floor was withdrawn.", _SPEAKER, _ABOUT_SPEAKER
    ),
    _meeting("speaker.granted", "The floor was given.", _SPEAKER, _ABOUT_SPEAKER),
    _meeting("speaker.started", "A speech started (with its end time).", _SPEAKER, _ABOUT_SPEAKER),
    _meeting("speaker.finished", "A speech ended.", _SPEAKER, _ABOUT_SPEAKER),
    _meeting("speaker.warning", "A speech nears its time limit.", _SPEAKER, _ABOUT_SPEAKER),
    _meeting("speaker.time_up", "A speech reached its time limit.", _SPEAKER, _ABOUT_SPEAKER),
    _meeting("speakers.reordered", "The chair reordered the queue.", _SPEAKER),
    _meeting(
        "speaker.paused",
        "The remote speaker's audio was lost: the timer stands still.",
        _SPEAKER,
        {**_ABOUT_SPEAKER, "reason": "string"},
    ),
    _meeting(
        "speaker.resumed",
        "The remote speaker is heard again: the timer runs on.",
        _SPEAKER,
        {**_ABOUT_SPEAKER, "ends_at": "string"},
    ),
    _meeting(
        "media.joined",
        "Someone joined the sitting remotely.",
        {"session_id": "string", "user_id": "integer"},
        # participant (attends remotely), hall (the sound desk), viewer (projector).
        {"kind": "string"},
    ),
    _meeting(
        "media.left",
        "A remote participant left.",
        {"session_id": "string", "user_id": "integer", "reason": "string"},
    ),
    _meeting(
        "media.quality",
        "A remote participant's connection quality changed.",
        {
            "session_id": "string",
            "user_id": "integer",
            "connection": "string",
            "participant": "object",
        },
    ),
    _meeting(
        "media.muted",
        "A remote microphone was muted or unmuted (by the chair or the participant).",
        {"session_id": "string", "user_id": "integer", "muted": "boolean", "participant": "object"},
    ),
    _meeting(
        "media.unmute_requested",
        "The chair asks a muted remote participant to unmute.",
        {"session_id": "string", "user_id": "integer", "participant": "object"},
    ),
    _meeting("poll.created", "A poll was prepared.", {"poll": "object"}),
    _meeting("poll.opened", "A poll opened for ballots.", {"poll": "object"}),
    _meeting("poll.progress", "How many have voted.", {"poll_id": "integer", "cast": "integer"}),
    _meeting(
        "poll.closed",
        "A poll closed, with its result.",
        {"poll_id": "integer", "state": "string", "closed_at": "string", "result": "object"},
    ),
)

USER_EVENT_TYPES = (
    EventType(
        "meeting.agenda_published",
        "user",
        "A participant's notice that the agenda of a meeting was published.",
        {
            "meeting_id": "integer",
            "title": "string",
            "starts_at": "string",
            "place": "string",
            "items": "integer",
            "published_by": "string",
        },
    ),
    EventType(
        "meeting.preload_requested",
        "user",
        "A participant's tablet is asked to download the meeting's documents now "
        "(agenda published or changed since, or the secretary asked again).",
        {"meeting_id": "integer", "reason": "string"},
    ),
)

EVENT_TYPES = (*EVENT_TYPES, *USER_EVENT_TYPES)


def _topic(meeting_id: int) -> str:
    return f"meeting:{meeting_id}"


# Builders: services emit a meeting event only through these (one per declared type).


@builds("meeting.created")
async def emit_meeting_created(w: Write, meeting_id: int, summary: Mapping[str, Any]) -> Event:
    """``summary`` is the meeting as the API shows it (id, title, state, …)."""
    return await w.emit(_topic(meeting_id), "meeting.created", dict(summary))


@builds("meeting.updated")
async def emit_meeting_updated(
    w: Write,
    meeting_id: int,
    *,
    title: str,
    starts_at: str,
    place: str,
    speech_limit_secs: int,
    quorum: dict[str, Any],
) -> Event:
    return await w.emit(
        _topic(meeting_id),
        "meeting.updated",
        payload(
            title=title,
            starts_at=starts_at,
            place=place,
            speech_limit_secs=speech_limit_secs,
            quorum=quorum,
        ),
    )


@builds("meeting.state_changed")
async def emit_meeting_state_changed(
    w: Write,
    meeting_id: int,
    *,
    state: str,
    previous: str,
    at: str,
    started_at: str | None,
    closed_at: str | None,
) -> dict[str, Any]:
    data = payload(
        state=state, previous=previous, at=at, started_at=started_at, closed_at=closed_at
    )
    await w.emit(_topic(meeting_id), "meeting.state_changed", data)
    return data


@builds("participants.changed")
async def emit_participants_changed(
    w: Write, meeting_id: int, *, user_id: int, participants: list[Any], quorum: dict[str, Any]
) -> Event:
    return await w.emit(
        _topic(meeting_id),
        "participants.changed",
        payload(user_id=user_id, participants=participants, quorum=quorum),
    )


@builds("attendance.changed")
async def emit_attendance_changed(
    w: Write, meeting_id: int, *, user_id: int, participant: dict[str, Any], quorum: dict[str, Any]
) -> Event:
    return await w.emit(
        _topic(meeting_id),
        "attendance.changed",
        payload(user_id=user_id, participant=participant, quorum=quorum),
    )


@builds("agenda.changed")
async def emit_agenda_changed(w: Write, meeting_id: int, *, agenda: list[Any]) -> Event:
    return await w.emit(_topic(meeting_id), "agenda.changed", payload(agenda=agenda))


@builds("agenda.published")
async def emit_agenda_published(
    w: Write, meeting_id: int, *, agenda: list[Any], published_at: str
) -> Event:
    return await w.emit(
        _topic(meeting_id), "agenda.published", payload(agenda=agenda, published_at=published_at)
    )


@builds("meeting.agenda_published")
async def emit_meeting_agenda_published(
    w: Write,
    user_ids: Sequence[int],
    *,
    meeting_id: int,
    title: str,
    starts_at: str,
    place: str,
    items: int,
    published_by: str,
) -> dict[str, Event]:
    """The notice in each participant's own inbox."""
    return await w.emit_many(
        [f"user:{uid}" for uid in user_ids],
        "meeting.agenda_published",
        payload(
            meeting_id=meeting_id,
            title=title,
            starts_at=starts_at,
            place=place,
            items=items,
            published_by=published_by,
        ),
    )


@builds("meeting.preload_requested")
async def emit_meeting_preload_requested(
    w: Write, user_ids: Sequence[int], *, meeting_id: int, reason: str
) -> dict[str, Event]:
    """In each participant's own inbox: an open tablet starts its download on it, whatever
    page of the app it shows (it follows no meeting topic there)."""
    return await w.emit_many(
        [f"user:{uid}" for uid in user_ids],
        "meeting.preload_requested",
        payload(meeting_id=meeting_id, reason=reason),
    )


@builds("agenda.current_changed")
async def emit_agenda_current_changed(
    w: Write, meeting_id: int, *, agenda_item_id: int | None
) -> Event:
    return await w.emit(
        _topic(meeting_id), "agenda.current_changed", payload(agenda_item_id=agenda_item_id)
    )


@builds("presentation.changed")
async def emit_presentation_changed(
    w: Write, meeting_id: int, *, presentation: dict[str, Any] | None
) -> Event:
    return await w.emit(
        _topic(meeting_id), "presentation.changed", payload(presentation=presentation)
    )


@builds("presenter.changed")
async def emit_presenter_changed(w: Write, meeting_id: int, *, presenter_id: int | None) -> Event:
    return await w.emit(_topic(meeting_id), "presenter.changed", payload(presenter_id=presenter_id))


@builds("annotation.shared")
async def emit_annotation_shared(w: Write, meeting_id: int, *, annotation: dict[str, Any]) -> Event:
    return await w.emit(_topic(meeting_id), "annotation.shared", payload(annotation=annotation))


@builds("annotation.removed")
async def emit_annotation_removed(
    w: Write, meeting_id: int, *, annotation_id: int, file_id: int
) -> Event:
    return await w.emit(
        _topic(meeting_id),
        "annotation.removed",
        payload(annotation_id=annotation_id, file_id=file_id),
    )


async def _speaker(
    w: Write,
    type: str,
    meeting_id: int,
    speakers: dict[str, Any],
    speaker_id: int,
    user_id: int,
    kind: str,
    **extra: Any,
) -> Event:
    data = payload(speaker_id=speaker_id, user_id=user_id, kind=kind, **extra)
    data["speakers"] = speakers
    return await w.emit(_topic(meeting_id), type, data)


@builds("speaker.requested")
async def emit_speaker_requested(
    w: Write, meeting_id: int, *, speakers: dict[str, Any], speaker_id: int, user_id: int, kind: str
) -> Event:
    return await _speaker(w, "speaker.requested", meeting_id, speakers, speaker_id, user_id, kind)


@builds("speaker.withdrawn")
async def emit_speaker_withdrawn(
    w: Write, meeting_id: int, *, speakers: dict[str, Any], speaker_id: int, user_id: int, kind: str
) -> Event:
    return await _speaker(w, "speaker.withdrawn", meeting_id, speakers, speaker_id, user_id, kind)


@builds("speaker.granted")
async def emit_speaker_granted(
    w: Write, meeting_id: int, *, speakers: dict[str, Any], speaker_id: int, user_id: int, kind: str
) -> Event:
    return await _speaker(w, "speaker.granted", meeting_id, speakers, speaker_id, user_id, kind)


@builds("speaker.started")
async def emit_speaker_started(
    w: Write,
    meeting_id: int,
    *,
    speakers: dict[str, Any],
    speaker_id: int,
    user_id: int,
    kind: str,
    started_at: str,
    ends_at: str,
    limit_secs: int | None,
) -> Event:
    return await _speaker(
        w,
        "speaker.started",
        meeting_id,
        speakers,
        speaker_id,
        user_id,
        kind,
        started_at=started_at,
        ends_at=ends_at,
        limit_secs=limit_secs,
    )


@builds("speaker.finished")
async def emit_speaker_finished(
    w: Write,
    meeting_id: int,
    *,
    speakers: dict[str, Any],
    speaker_id: int,
    user_id: int,
    kind: str,
    duration_secs: float | None,
) -> Event:
    return await _speaker(
        w,
        "speaker.finished",
        meeting_id,
        speakers,
        speaker_id,
        user_id,
        kind,
        duration_secs=duration_secs,
    )


@builds("speaker.warning")
async def emit_speaker_warning(
    w: Write,
    meeting_id: int,
    *,
    speakers: dict[str, Any],
    speaker_id: int,
    user_id: int,
    kind: str,
    remaining_secs: float,
    ends_at: str,
) -> Event:
    return await _speaker(
        w,
        "speaker.warning",
        meeting_id,
        speakers,
        speaker_id,
        user_id,
        kind,
        remaining_secs=remaining_secs,
        ends_at=ends_at,
    )


@builds("speaker.time_up")
async def emit_speaker_time_up(
    w: Write,
    meeting_id: int,
    *,
    speakers: dict[str, Any],
    speaker_id: int,
    user_id: int,
    kind: str,
    ends_at: str,
) -> Event:
    return await _speaker(
        w, "speaker.time_up", meeting_id, speakers, speaker_id, user_id, kind, ends_at=ends_at
    )


@builds("speakers.reordered")
async def emit_speakers_reordered(w: Write, meeting_id: int, *, speakers: dict[str, Any]) -> Event:
    return await w.emit(_topic(meeting_id), "speakers.reordered", payload(speakers=speakers))


@builds("media.joined")
async def emit_media_joined(
    w: Write, meeting_id: int, *, session_id: str, user_id: int, role: str, kind: str = OMIT
) -> Event:
    return await w.emit(
        _topic(meeting_id),
        "media.joined",
        payload(session_id=session_id, user_id=user_id, role=role, kind=kind),
    )


@builds("media.left")
async def emit_media_left(
    w: Write, meeting_id: int, *, session_id: str, user_id: int, reason: str
) -> Event:
    return await w.emit(
        _topic(meeting_id),
        "media.left",
        payload(session_id=session_id, user_id=user_id, reason=reason),
    )


@builds("speaker.paused")
async def emit_speaker_paused(
    w: Write,
    meeting_id: int,
    *,
    speakers: dict[str, Any],
    speaker_id: int,
    user_id: int,
    kind: str,
    reason: str,
) -> Event:
    return await _speaker(
        w, "speaker.paused", meeting_id, speakers, speaker_id, user_id, kind, reason=reason
    )


@builds("speaker.resumed")
async def emit_speaker_resumed(
    w: Write,
    meeting_id: int,
    *,
    speakers: dict[str, Any],
    speaker_id: int,
    user_id: int,
    kind: str,
    ends_at: str,
) -> Event:
    return await _speaker(
        w, "speaker.resumed", meeting_id, speakers, speaker_id, user_id, kind, ends_at=ends_at
    )


@builds("media.quality")
async def emit_media_quality(
    w: Write,
    meeting_id: int,
    *,
    session_id: str,
    user_id: int,
    connection: str,
    rtt_ms: float | None,
    loss: float | None,
    participant: dict[str, Any],
) -> Event:
    return await w.emit(
        _topic(meeting_id),
        "media.quality",
        payload(
            session_id=session_id,
            user_id=user_id,
            connection=connection,
            rtt_ms=rtt_ms,
            loss=loss,
            participant=participant,
        ),
    )


@builds("media.muted")
async def emit_media_muted(
    w: Write,
    meeting_id: int,
    *,
    session_id: str,
    user_id: int,
    muted: bool,
    by: int,
    participant: dict[str, Any],
) -> Event:
    return await w.emit(
        _topic(meeting_id),
        "media.muted",
        payload(
            session_id=session_id, user_id=user_id, muted=muted, by=by, participant=participant
        ),
    )


@builds("media.unmute_requested")
async def emit_media_unmute_requested(
    w: Write,
    meeting_id: int,
    *,
    session_id: str,
    user_id: int,
    by: int,
    participant: dict[str, Any],
) -> Event:
    return await w.emit(
        _topic(meeting_id),
        "media.unmute_requested",
        payload(session_id=session_id, user_id=user_id, by=by, participant=participant),
    )


@builds("poll.created")
async def emit_poll_created(w: Write, meeting_id: int, *, poll: dict[str, Any]) -> Event:
    return await w.emit(_topic(meeting_id), "poll.created", payload(poll=poll))


@builds("poll.opened")
async def emit_poll_opened(w: Write, meeting_id: int, *, poll: dict[str, Any]) -> Event:
    return await w.emit(_topic(meeting_id), "poll.opened", payload(poll=poll))


@builds("poll.progress")
async def emit_poll_progress(w: Write, meeting_id: int, *, poll_id: int, cast: int) -> Event:
    return await w.emit(_topic(meeting_id), "poll.progress", payload(poll_id=poll_id, cast=cast))


@builds("poll.closed")
async def emit_poll_closed(
    w: Write, meeting_id: int, *, poll_id: int, state: str, closed_at: str, result: dict[str, Any]
) -> Event:
    return await w.emit(
        _topic(meeting_id),
        "poll.closed",
        payload(poll_id=poll_id, state=state, closed_at=closed_at, result=result),
    )
