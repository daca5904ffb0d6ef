"""The event types of meetings, as a contract (``server.realtime.contract``): all go on
``meeting:{id}``. Only fields every emitter sets are declared; payloads may hold more."""

from __future__ import annotations

from server.realtime.contract import EventType


def _meeting(name: str, description: str, fields: dict[str, str] | None = None,
             optional: dict[str, str] | None = None) -> EventType:
    return EventType(name, "meeting", description, fields or {}, optional or {})


# A speaker event carries the queue as it is after the change, and the speaker it is about.
_SPEAKER = {"speakers": "object"}
_ABOUT_SPEAKER = {"speaker_id": "integer", "user_id": "integer", "kind": "string"}

EVENT_TYPES = (
    _meeting("meeting.created", "The meeting was made (opens its topic).",
             {"id": "integer", "title": "string", "state": "string"}),
    _meeting("meeting.updated", "Title, time, place, speech limit or quorum rule changed.",
             {"quorum": "object"}),
    _meeting("meeting.state_changed", "The session started, adjourned or closed.",
             {"state": "string", "previous": "string", "at": "string",
              "started_at": "string|null", "closed_at": "string|null"}),
    _meeting("participants.changed", "A participant was added, changed role or removed.",
             {"user_id": "integer", "participants": "array", "quorum": "object"}),
    _meeting("attendance.changed", "A participant checked in or was marked absent.",
             {"user_id": "integer", "participant": "object", "quorum": "object"}),
    _meeting("agenda.changed", "The agenda as it is now.", {"agenda": "array"}),
    _meeting("agenda.current_changed", "The item under discussion.",
             {"agenda_item_id": "integer|null"}),
    _meeting("presentation.changed", "The document page everyone follows (or none).",
             {"presentation": "object|null"}),
    _meeting("presenter.changed", "Who drives the presentation.",
             {"presenter_id": "integer|null"}),
    _meeting("annotation.shared", "An annotation was shared with the meeting.",
             {"annotation": "object"}),
    _meeting("annotation.removed", "A shared annotation was removed.",
             {"annotation_id": "integer", "file_id": "integer"}),
    _meeting("speaker.requested", "A request for the floor.", _SPEAKER, _ABOUT_SPEAKER),
    _meeting("speaker.withdrawn", "A request for the floor was withdrawn.", _SPEAKER,
             _ABOUT_SPEAKER),
    _meeting("speaker.granted", "The floor was given.", _SPEAKER, _ABOUT_SPEAKER),
    _meeting("speaker.started", "A speech started (with its end time).", _SPEAKER,
             _ABOUT_SPEAKER),
    _meeting("speaker.finished", "A speech ended.", _SPEAKER, _ABOUT_SPEAKER),
    _meeting("speaker.warning", "A speech nears its time limit.", _SPEAKER, _ABOUT_SPEAKER),
    _meeting("speaker.time_up", "A speech reached its time limit.", _SPEAKER,
             _ABOUT_SPEAKER),
    _meeting("speakers.reordered", "The chair reordered the queue.", _SPEAKER),
    _meeting("media.joined", "Someone joined the sitting remotely.",
             {"session_id": "string", "user_id": "integer"}),
    _meeting("media.left", "A remote participant left.",
             {"session_id": "string", "user_id": "integer", "reason": "string"}),
    _meeting("poll.created", "A poll was prepared.", {"poll": "object"}),
    _meeting("poll.opened", "A poll opened for ballots.", {"poll": "object"}),
    _meeting("poll.progress", "How many have voted.",
             {"poll_id": "integer", "cast": "integer"}),
    _meeting("poll.closed", "A poll closed, with its result.",
             {"poll_id": "integer", "state": "string", "closed_at": "string",
              "result": "object"}),
)
