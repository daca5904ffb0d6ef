"""Who may see what of a meeting: each rule once, in its Python and SQL forms side by side.

* **participation** — the meeting's participants (chairs, secretaries, delegates, guests)
  follow its ``meeting:`` topic and read the documents on its agenda;
* **meeting** — participants, the meeting's creator and administrators read the meeting.

``tests/meeting/test_visibility.py`` checks both forms agree for every role and
participation of a seeded meeting.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, exists, or_, true

from meeting.models import AgendaDocument, Meeting, Participant
from server.auth.principal import Principal


def takes_part(principal: Principal, participant: Participant | None) -> bool:
    """Python: ``participant`` is the principal's row of the meeting (or None)."""
    return participant is not None and participant.user_id == principal.id


def takes_part_sql(principal: Principal, meeting_id: Any) -> ColumnElement[bool]:
    """SQL: the principal takes part in the meeting ``meeting_id`` (a value or a column)."""
    return exists().where(Participant.meeting_id == meeting_id, Participant.user_id == principal.id)


def may_view_meeting(
    principal: Principal, meeting: Meeting, participant: Participant | None
) -> bool:
    """Python: participants, the creator and administrators read the meeting."""
    return (
        principal.is_admin
        or meeting.created_by == principal.id
        or takes_part(principal, participant)
    )


def meeting_visible_sql(principal: Principal) -> ColumnElement[bool]:
    """SQL over ``meetings``: the form of ``may_view_meeting``."""
    if principal.is_admin:
        return true()
    return or_(Meeting.created_by == principal.id, takes_part_sql(principal, Meeting.id))


def agenda_document_readable_sql(principal: Principal, file_id: Any) -> ColumnElement[bool]:
    """SQL: the file is on the agenda of a meeting the principal takes part in."""
    return exists().where(
        AgendaDocument.file_id == file_id, takes_part_sql(principal, AgendaDocument.meeting_id)
    )
