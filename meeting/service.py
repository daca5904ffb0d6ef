"""The meeting service's public face: what routes and other features call.

The functions live in one module per concept (``meetings``, ``agenda``, ``presentation``,
``attendance``, ``speakers``, ``annotations``); this module gathers the ones other
features rely on, so they import from one place:

* ``require_meeting(session, meeting_id)`` — the meeting or 404 ``meeting_not_found``;
* ``get_participant(session, meeting_id, user_id)`` — a ``Participant`` or None;
* ``is_present(session, meeting_id, user_id)`` — checked in right now?;
* ``member_ids`` / ``present_member_ids`` — the members of the body (chairs and
  delegates, never guests), all or present;
* ``floor_holder(session, meeting_id)`` — the user holding the floor, or None;
* ``meeting_state(ctx, meeting_id, principal)`` — the whole state with its ``seq``.

Events on ``meeting:{id}``: ``speaker.granted`` and ``speaker.finished`` carry ``user_id``
(the media feature follows the floor with them).
"""

from __future__ import annotations

from meeting.meetings import meeting_state
from meeting.participants import (
    get_participant,
    is_present,
    meeting_subject,
    meeting_topic,
    member_ids,
    present_member_ids,
    quorum,
    require_in_session,
    require_meeting,
    require_open,
    require_role,
    require_visible,
)
from meeting.speakers import floor_holder

__all__ = [
    "floor_holder",
    "get_participant",
    "is_present",
    "meeting_state",
    "meeting_subject",
    "meeting_topic",
    "member_ids",
    "present_member_ids",
    "quorum",
    "require_in_session",
    "require_meeting",
    "require_open",
    "require_role",
    "require_visible",
]
