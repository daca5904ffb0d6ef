"""Preparing a meeting before the session: finding its participants among the accounts,
publishing the agenda to them, and copying an earlier meeting as a template."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, cast, func, or_, select

from meeting.agenda import add_item, agenda_json
from meeting.events import emit_agenda_published, emit_meeting_agenda_published
from meeting.meetings import ORGANISER_ROLES, QuorumRule, create_meeting
from meeting.models import OFFICER_ROLES, Meeting, Participant, ParticipantRole
from meeting.participants import meeting_subject, require_role, require_visible
from meeting.polls.lifecycle import PollSpec, create_poll
from meeting.polls.models import Poll
from meeting.polls.rules import PollKind, Rule
from meeting.preparation_preload import PUBLISHED, tell_tablets
from server.auth.principal import Principal
from server.context import Context
from server.errors import Forbidden
from server.org.models import Role, User
from server.org.service import unit_subtree

# Candidates answered at most per search: the 95 delegates of a council fit in one answer.
MAX_CANDIDATES = 500
# The notice each participant gets when the agenda is published.
AGENDA_PUBLISHED = "meeting.agenda_published"


def require_organiser(actor: Principal) -> None:
    if not actor.has_role(*ORGANISER_ROLES):
        raise Forbidden(
            "Only chairs, secretaries, the standing committee or an administrator "
            "prepare meetings.",
            code="not_organiser",
        )


async def candidates(
    ctx: Context,
    actor: Principal,
    *,
    q: str = "",
    role: Role | None = None,
    unit_id: int | None = None,
    limit: int = MAX_CANDIDATES,
) -> dict[str, Any]:
    """Active accounts an organiser may invite, by name, role or unit (with the units below
    it): names, titles and units only, ordered by name, at most ``limit``."""
    require_organiser(actor)
    conditions: list[Any] = [User.active.is_(True)]
    if q:
        escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        conditions.append(
            or_(
                func.lower(User.display_name).like(pattern, escape="\\"),
                func.lower(User.username).like(pattern, escape="\\"),
                func.lower(User.title).like(pattern, escape="\\"),
            )
        )
    if role is not None:
        conditions.append(cast(User.roles, String).like(f'%"{role.value}"%'))
    async with ctx.read() as session:
        if unit_id is not None:
            conditions.append(User.unit_id.in_(await unit_subtree(session, [unit_id])))
        total = (
            await session.execute(select(func.count()).select_from(User).where(*conditions))
        ).scalar_one()
        rows = (
            await session.execute(
                select(User.id, User.display_name, User.title, User.unit_id, User.roles)
                .where(*conditions)
                .order_by(User.display_name, User.id)
                .limit(limit)
            )
        ).all()
    return {
        "total": int(total),
        "users": [
            {
                "id": r.id,
                "display_name": r.display_name,
                "title": r.title or "",
                "unit_id": r.unit_id,
                "roles": list(r.roles or []),
            }
            for r in rows
        ],
    }


async def publish_agenda(ctx: Context, actor: Principal, meeting_id: int) -> dict[str, Any]:
    """Send the agenda to every participant: ``agenda.published`` on the meeting's topic and
    a notice in each participant's own inbox (chair or secretary); with
    ``preload_on_publish`` their tablets also start downloading the documents."""
    async with ctx.write() as w:
        meeting = await require_visible(w.session, meeting_id, actor, lock=True)
        await require_role(w.session, meeting, actor, OFFICER_ROLES, "publish the agenda")
        agenda = await agenda_json(w.session, meeting_id)
        user_ids = list(
            (
                await w.session.execute(
                    select(Participant.user_id).where(Participant.meeting_id == meeting_id)
                )
            ).scalars()
        )
        items = _count(agenda)
        notice = {
            "meeting_id": meeting.id,
            "title": meeting.title,
            "starts_at": meeting.starts_at.isoformat(),
            "place": meeting.place,
            "items": items,
            "published_by": actor.display_name,
        }
        await emit_agenda_published(w, meeting_id, agenda=agenda, published_at=w.now.isoformat())
        await emit_meeting_agenda_published(w, user_ids, **notice)
        meeting.agenda_published_at = w.now
        if ctx.settings.preload_on_publish:
            await tell_tablets(w, meeting_id, PUBLISHED)
        await w.audit(
            actor.id,
            "meeting.agenda.publish",
            meeting_subject(meeting_id),
            {"items": items, "participants": len(user_ids)},
        )
        published_at = w.now
    return {"published_at": published_at, "participants": len(user_ids), "items": items}


def _count(tree: list[dict[str, Any]]) -> int:
    return sum(1 + _count(node["children"]) for node in tree)


async def copy_meeting(
    ctx: Context, actor: Principal, meeting_id: int, *, title: str, starts_at: datetime
) -> Meeting:
    """A new scheduled meeting with the participants, settings, agenda (with documents) and
    prepared polls of an earlier one the actor runs; attendance and results stay behind."""
    async with ctx.read() as session:
        source = await require_visible(session, meeting_id, actor)
        await require_role(session, source, actor, OFFICER_ROLES, "copy this meeting")
        people = (
            await session.execute(
                select(Participant.user_id, Participant.role)
                .join(User, User.id == Participant.user_id)
                .where(Participant.meeting_id == meeting_id, User.active.is_(True))
                .order_by(Participant.user_id)
            )
        ).all()
        agenda = await agenda_json(session, meeting_id)
        polls = (
            (
                await session.execute(
                    select(Poll).where(Poll.meeting_id == meeting_id).order_by(Poll.id)
                )
            )
            .scalars()
            .all()
        )
        place, limit = source.place, source.speech_limit_secs
        rule = QuorumRule(source.quorum_numerator, source.quorum_denominator)
    by_role: dict[str, list[int]] = {role.value: [] for role in ParticipantRole}
    for user_id, role in people:
        by_role[role].append(user_id)
    copy = await create_meeting(
        ctx,
        actor,
        title=title,
        starts_at=starts_at,
        place=place,
        chair_ids=by_role["chair"],
        delegate_ids=by_role["delegate"],
        secretary_ids=by_role["secretary"],
        guest_ids=by_role["guest"],
        speech_limit_secs=limit,
        quorum_rule=rule,
    )
    new_ids: dict[int, int] = {}

    async def copy_items(nodes: list[dict[str, Any]], parent_id: int | None) -> None:
        for node in nodes:
            made = await add_item(
                ctx,
                actor,
                copy.id,
                title=node["title"],
                document_ids=node["document_ids"],
                parent_id=parent_id,
                planned_minutes=node["planned_minutes"],
            )
            new_ids[node["id"]] = int(made["id"])
            await copy_items(node["children"], int(made["id"]))

    await copy_items(agenda, None)
    for poll in polls:
        await create_poll(
            ctx,
            actor,
            copy.id,
            PollSpec(
                title=poll.title,
                kind=PollKind(poll.kind),
                rule=Rule(poll.rule),
                secret=poll.secret,
                options=list(poll.options),
                max_choices=poll.max_choices,
                agenda_item_id=new_ids.get(poll.agenda_item_id) if poll.agenda_item_id else None,
                duration_secs=poll.duration_secs,
            ),
        )
    async with ctx.write() as w:
        await w.audit(
            actor.id,
            "meeting.copy",
            meeting_subject(copy.id),
            {"from": meeting_id, "polls": len(polls), "items": len(new_ids)},
        )
    return copy
