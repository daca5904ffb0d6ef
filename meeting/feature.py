"""The meeting feature as the core sees it: routes, topic and file permissions, timers."""

from __future__ import annotations

from sqlalchemy import select

from meeting.models import AgendaDocument, Participant
from meeting.participants import get_participant
from server.auth.principal import Principal
from server.context import Context
from server.features import Feature


async def may_follow_meeting(ctx: Context, principal: Principal, meeting_id: int) -> bool:
    """Only the meeting's participants (chairs, secretaries, delegates, guests) follow it."""
    async with ctx.read() as session:
        return await get_participant(session, meeting_id, principal.id) is not None


async def may_read_agenda_document(ctx: Context, principal: Principal, file_id: int) -> bool:
    """A participant may read every document on the agenda of their meeting."""
    async with ctx.read() as session:
        row = (await session.execute(
            select(AgendaDocument.id)
            .join(Participant, Participant.meeting_id == AgendaDocument.meeting_id)
            .where(AgendaDocument.file_id == file_id, Participant.user_id == principal.id)
            .limit(1)
        )).first()
    return row is not None


def feature() -> Feature:
    from meeting.demo import seed_demo_meeting
    from meeting.display import routes as display_routes
    from meeting.routes import routes
    from meeting.speakers import run_speech_timers

    return Feature(
        name="meeting",
        routes=[*routes, *display_routes],
        topic_authorizers={"meeting": may_follow_meeting},
        background=[run_speech_timers],
        demo=[seed_demo_meeting],
        file_access_checks=[may_read_agenda_document],
    )
