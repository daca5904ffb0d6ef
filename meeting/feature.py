"""The meeting feature as the core sees it: routes, topic and file permissions, timers."""

from __future__ import annotations

from meeting.participants import get_participant
from meeting.visibility import agenda_document_readable_sql, takes_part
from server.auth.principal import Principal
from server.context import Context
from server.features import Feature
from server.realtime.log import Event


async def may_follow_meeting(ctx: Context, principal: Principal, meeting_id: int) -> bool:
    """Only the meeting's participants (chairs, secretaries, delegates, guests) follow it."""
    async with ctx.read() as session:
        return takes_part(principal, await get_participant(session, meeting_id, principal.id))


def participation_changed(event: Event) -> list[tuple[int, str | None]]:
    """``participants.changed`` names the user whose participation changed: its sockets
    check their ``meeting:`` subscriptions again (a removed participant is dropped)."""
    user_id = event.data.get("user_id")
    return [(int(user_id), "participation_changed")] if isinstance(user_id, int) else []


def feature() -> Feature:
    from meeting.demo import seed_demo_meeting
    from meeting.display import routes as display_routes
    from meeting.events import EVENT_TYPES
    from meeting.preparation_routes import routes as preparation_routes
    from meeting.routes import routes
    from meeting.speakers import run_speech_timers

    return Feature(
        name="meeting",
        routes=[*routes, *display_routes, *preparation_routes],
        topic_authorizers={"meeting": may_follow_meeting},
        access_changes={"participants.changed": participation_changed},
        event_types=list(EVENT_TYPES),
        background=[run_speech_timers],
        demo=[seed_demo_meeting],
        # A participant may read every document on the agenda of their meeting.
        file_access_rules=[agenda_document_readable_sql],
    )
