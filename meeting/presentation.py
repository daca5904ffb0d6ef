"""Presentation sync: the chair (or a presenter they name) shows an item, a document, a page.

``presentation.changed`` carries the whole presentation, so a tablet in follow mode turns
to it at once, and a tablet that joins late reads the same thing from the meeting state.
Every change is audited: who presented what, and when.
"""

from __future__ import annotations

from typing import Any

from meeting.agenda import item_document_ids, require_item
from meeting.events import emit_presentation_changed, emit_presenter_changed
from meeting.models import CHAIR_ROLES, Meeting, ParticipantRole
from meeting.participants import (
    get_participant,
    meeting_subject,
    require_open,
    require_role,
    require_visible,
)
from server.auth.principal import Principal
from server.clock import utc_iso
from server.context import Context
from server.errors import Forbidden, Unprocessable
from server.files.models import StoredFile


def presentation_json(meeting: Meeting) -> dict[str, Any] | None:
    """What every tablet in follow mode shows, or None before anything was presented."""
    if meeting.presented_document_id is None:
        return None
    return {
        "agenda_item_id": meeting.presented_item_id,
        "document_id": meeting.presented_document_id,
        "page": meeting.presented_page,
        "by": meeting.presented_by,
        "at": utc_iso(meeting.presented_at) if meeting.presented_at else None,
    }


async def present(
    ctx: Context,
    actor: Principal,
    meeting_id: int,
    *,
    agenda_item_id: int,
    document_id: int,
    page: int,
) -> dict[str, Any]:
    """Show a page of a document of an agenda item on every tablet; chair or presenter.

    422 ``agenda_item_not_found``, ``document_not_on_item`` or ``page_out_of_range`` when
    the page does not exist; 409 ``meeting_closed``.
    """
    async with ctx.write() as w:
        meeting = await require_visible(w.session, meeting_id, actor, lock=True)
        me = await get_participant(w.session, meeting_id, actor.id)
        is_chair = me is not None and me.participant_role is ParticipantRole.CHAIR
        if not is_chair and (me is None or meeting.presenter_id != actor.id):
            raise Forbidden(
                "Only the chair or the presenter they named may present.", code="not_presenter"
            )
        require_open(meeting)
        await require_item(w.session, meeting_id, agenda_item_id)
        if document_id not in await item_document_ids(w.session, agenda_item_id):
            raise Unprocessable(
                f"Document {document_id} is not attached to agenda item {agenda_item_id}.",
                code="document_not_on_item",
            )
        document = await w.session.get(StoredFile, document_id)
        pages = document.pages if document is not None and document.pages else 1
        if not 1 <= page <= pages:
            raise Unprocessable(
                f"Document {document_id} has pages 1 to {pages}.",
                code="page_out_of_range",
                details={"pages": pages},
            )
        meeting.presented_item_id = agenda_item_id
        meeting.presented_document_id = document_id
        meeting.presented_page = page
        meeting.presented_by = actor.id
        meeting.presented_at = w.now
        shown = presentation_json(meeting)
        await w.audit(
            actor.id,
            "meeting.present",
            meeting_subject(meeting_id),
            {
                "agenda_item_id": agenda_item_id,
                "document_id": document_id,
                "page": page,
            },
        )
        await emit_presentation_changed(w, meeting_id, presentation=shown)
    assert shown is not None
    return shown


async def name_presenter(
    ctx: Context, actor: Principal, meeting_id: int, user_id: int | None
) -> None:
    """Let a participant drive the presentation (None: only the chairs); chair only."""
    async with ctx.write() as w:
        meeting = await require_visible(w.session, meeting_id, actor, lock=True)
        await require_role(w.session, meeting, actor, CHAIR_ROLES, "name a presenter")
        require_open(meeting)
        if user_id is not None and await get_participant(w.session, meeting_id, user_id) is None:
            raise Unprocessable(
                f"User {user_id} does not take part in meeting {meeting_id}.",
                code="not_a_participant",
            )
        meeting.presenter_id = user_id
        await w.audit(
            actor.id, "meeting.presenter", meeting_subject(meeting_id), {"user_id": user_id}
        )
        await emit_presenter_changed(w, meeting_id, presenter_id=user_id)
