"""Documents on the tablets before the session: once a meeting's agenda is published, the
participants' tablets that are online are told to download its documents at once (on
publishing, on each later change of the agenda's documents, and when the secretary asks
again). The tablet does the downloading (web_client/static/js/offline.js); the server only
says when, in each participant's own inbox, which a tablet follows on every page."""

from __future__ import annotations

from sqlalchemy import select

from meeting.events import emit_meeting_preload_requested
from meeting.models import OFFICER_ROLES, Meeting, Participant
from meeting.participants import meeting_subject, require_role, require_visible
from server.auth.principal import Principal
from server.context import Context, Write

# Why a tablet is asked (the event's `reason`).
PUBLISHED = "published"
AGENDA_CHANGED = "agenda_changed"
REQUESTED = "requested"


async def tell_tablets(w: Write, meeting_id: int, reason: str) -> int:
    """Ask every participant's tablet to download the meeting's documents; how many."""
    user_ids = list(
        (
            await w.session.execute(
                select(Participant.user_id)
                .where(Participant.meeting_id == meeting_id)
                .order_by(Participant.user_id)
            )
        ).scalars()
    )
    if user_ids:
        await emit_meeting_preload_requested(w, user_ids, meeting_id=meeting_id, reason=reason)
    return len(user_ids)


async def after_agenda_change(ctx: Context, w: Write, meeting: Meeting) -> None:
    """The documents of a published agenda changed: the tablets fetch what they lack."""
    if ctx.settings.preload_on_publish and meeting.agenda_published_at is not None:
        await tell_tablets(w, meeting.id, AGENDA_CHANGED)


async def request_preload(ctx: Context, actor: Principal, meeting_id: int) -> dict[str, int]:
    """The secretary's "download for every delegate": the request again, whatever the
    setting (a chair or secretary of the meeting), with an audit record."""
    async with ctx.write() as w:
        meeting = await require_visible(w.session, meeting_id, actor)
        await require_role(
            w.session, meeting, actor, OFFICER_ROLES, "ask the tablets to download the documents"
        )
        count = await tell_tablets(w, meeting_id, REQUESTED)
        await w.audit(
            actor.id,
            "meeting.preload.request",
            meeting_subject(meeting_id),
            {"participants": count},
        )
    return {"participants": count}
