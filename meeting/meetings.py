"""Meetings: creating them, their lifecycle, and the whole state in one document.

Lifecycle: scheduled → in_session ⇄ adjourned → closed. A closed meeting is read-only.
``meeting_state`` reads everything a tablet needs together with the topic's ``seq`` in one
consistent snapshot, so "load the state, then subscribe from its seq" misses nothing and
applies nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from meeting.agenda import agenda_json
from meeting.events import (
    emit_meeting_created,
    emit_meeting_state_changed,
    emit_meeting_updated,
    emit_participants_changed,
)
from meeting.models import (
    CHAIR_ROLES,
    OFFICER_ROLES,
    Meeting,
    MeetingState,
    Participant,
    ParticipantRole,
)
from meeting.participants import (
    get_participant,
    meeting_subject,
    meeting_topic,
    participants_json,
    quorum,
    require_open,
    require_role,
    require_visible,
)
from meeting.presentation import presentation_json
from meeting.speakers import finish_running_speech, floor_holder, speakers_json
from server.auth.principal import Principal
from server.clock import utc_iso
from server.context import Context
from server.errors import Conflict, Forbidden, NotFound, Unprocessable
from server.org.models import Role, User
from server.realtime.models import Topic

# Who may call a meeting into being.
ORGANISER_ROLES = (Role.ADMIN, Role.STANDING, Role.CHAIR, Role.SECRETARY)


@dataclass(frozen=True)
class QuorumRule:
    """At least ``numerator/denominator`` of all members present."""

    numerator: int = 2
    denominator: int = 3

    def check(self) -> None:
        if not (1 <= self.numerator <= self.denominator <= 1000):
            raise Unprocessable(
                "A quorum is a fraction between 1/1000 and 1.", code="invalid_quorum"
            )


NAMED_QUORUM_RULES = {
    "two_thirds_of_members": QuorumRule(2, 3),
    "majority_of_members": QuorumRule(1, 2),
}


def meeting_summary(meeting: Meeting, role: str | None = None) -> dict[str, Any]:
    return {
        "id": meeting.id,
        "title": meeting.title,
        "starts_at": utc_iso(meeting.starts_at),
        "place": meeting.place,
        "state": meeting.state,
        "role": role,
    }


async def create_meeting(
    ctx: Context,
    actor: Principal,
    *,
    title: str,
    starts_at: datetime,
    place: str = "",
    chair_ids: Sequence[int],
    delegate_ids: Sequence[int],
    secretary_ids: Sequence[int] = (),
    guest_ids: Sequence[int] = (),
    speech_limit_secs: int | None = None,
    quorum_rule: QuorumRule | None = None,
) -> Meeting:
    """Schedule a meeting with its participants (admin, standing, chair or secretary).

    422 ``chair_required``, ``duplicate_participant`` (someone in two roles),
    ``unknown_user`` (no such active user), ``too_many_participants``.
    """
    if not actor.has_role(*ORGANISER_ROLES):
        raise Forbidden(
            "Only chairs, secretaries, the standing committee or an administrator "
            "may schedule a meeting.",
            code="not_organiser",
        )
    rule = quorum_rule or QuorumRule()
    rule.check()
    roles: dict[int, ParticipantRole] = {}
    for role, ids in (
        (ParticipantRole.CHAIR, chair_ids),
        (ParticipantRole.SECRETARY, secretary_ids),
        (ParticipantRole.DELEGATE, delegate_ids),
        (ParticipantRole.GUEST, guest_ids),
    ):
        for user_id in ids:
            if user_id in roles:
                raise Unprocessable(
                    f"User {user_id} is listed twice.",
                    code="duplicate_participant",
                    details={"user_id": user_id},
                )
            roles[user_id] = role
    if not chair_ids:
        raise Unprocessable("A meeting needs a chair.", code="chair_required")
    if len(roles) > ctx.settings.meeting_max_participants:
        raise Unprocessable(
            f"A meeting has at most {ctx.settings.meeting_max_participants} participants.",
            code="too_many_participants",
        )
    async with ctx.write() as w:
        known = set(
            (
                await w.session.execute(
                    select(User.id).where(User.id.in_(list(roles)), User.active.is_(True))
                )
            ).scalars()
        )
        missing = sorted(set(roles) - known)
        if missing:
            raise Unprocessable(
                f"There is no active user {missing[0]}.",
                code="unknown_user",
                details={"user_ids": missing},
            )
        meeting = Meeting(
            title=title,
            starts_at=starts_at,
            place=place,
            state=MeetingState.SCHEDULED.value,
            quorum_numerator=rule.numerator,
            quorum_denominator=rule.denominator,
            speech_limit_secs=speech_limit_secs or ctx.settings.default_speech_limit_secs,
            created_by=actor.id,
            created_at=w.now,
        )
        w.session.add(meeting)
        await w.session.flush()
        for user_id, role in roles.items():
            w.session.add(Participant(meeting_id=meeting.id, user_id=user_id, role=role.value))
        await w.session.flush()
        await w.audit(
            actor.id,
            "meeting.create",
            meeting_subject(meeting.id),
            {
                "title": title,
                "starts_at": utc_iso(starts_at),
                "place": place,
                "chair_ids": list(chair_ids),
                "secretary_ids": list(secretary_ids),
                "delegate_ids": list(delegate_ids),
                "guest_ids": list(guest_ids),
                "quorum": [rule.numerator, rule.denominator],
                "speech_limit_secs": meeting.speech_limit_secs,
            },
        )
        # Opens the topic, so its seq exists from the start.
        await emit_meeting_created(w, meeting.id, meeting_summary(meeting))
    return meeting


async def update_meeting(
    ctx: Context,
    actor: Principal,
    meeting_id: int,
    *,
    title: str | None = None,
    starts_at: datetime | None = None,
    place: str | None = None,
    speech_limit_secs: int | None = None,
    quorum_rule: QuorumRule | None = None,
    remote_counts_for_quorum: bool | None = None,
) -> None:
    """Change title, time, place, speech limit or quorum rule (whether remote delegates
    count toward it too); chair or secretary."""
    if quorum_rule is not None:
        quorum_rule.check()
    async with ctx.write() as w:
        meeting = await require_visible(w.session, meeting_id, actor, lock=True)
        await require_role(w.session, meeting, actor, OFFICER_ROLES, "change the meeting")
        require_open(meeting)
        if title is not None:
            meeting.title = title
        if starts_at is not None:
            meeting.starts_at = starts_at
        if place is not None:
            meeting.place = place
        if speech_limit_secs is not None:
            meeting.speech_limit_secs = speech_limit_secs
        if quorum_rule is not None:
            meeting.quorum_numerator = quorum_rule.numerator
            meeting.quorum_denominator = quorum_rule.denominator
        if remote_counts_for_quorum is not None:
            meeting.remote_counts_for_quorum = remote_counts_for_quorum
        details = _settings_json(meeting)
        await w.audit(
            actor.id,
            "meeting.update",
            meeting_subject(meeting_id),
            {**details, "remote_counts_for_quorum": meeting.remote_counts_for_quorum},
        )
        await emit_meeting_updated(
            w, meeting_id, **details, quorum=await quorum(w.session, meeting)
        )


def _settings_json(meeting: Meeting) -> dict[str, Any]:
    return {
        "title": meeting.title,
        "starts_at": utc_iso(meeting.starts_at),
        "place": meeting.place,
        "speech_limit_secs": meeting.speech_limit_secs,
    }


async def change_state(
    ctx: Context, actor: Principal, meeting_id: int, target: MeetingState
) -> dict[str, Any]:
    """Start, adjourn, resume or close a meeting; chair only.

    409 ``illegal_transition`` when the lifecycle does not allow it (``meeting_closed``
    for a closed meeting). Adjourning or closing ends the running speech.
    """
    async with ctx.write() as w:
        meeting = await require_visible(w.session, meeting_id, actor, lock=True)
        await require_role(
            w.session, meeting, actor, CHAIR_ROLES, "start, adjourn or close the meeting"
        )
        require_open(meeting)
        previous = meeting.lifecycle
        if not previous.may_become(target):
            raise Conflict(
                f"A meeting that is {previous.value} cannot become {target.value}.",
                code="illegal_transition",
                details={"state": previous.value, "target": target.value},
            )
        if target is not MeetingState.IN_SESSION:
            await finish_running_speech(w, meeting, actor.id)
        meeting.state = target.value
        if target is MeetingState.IN_SESSION and meeting.started_at is None:
            meeting.started_at = w.now
        if target is MeetingState.CLOSED:
            meeting.closed_at = w.now
        now_quorum = await quorum(w.session, meeting)
        await w.audit(
            actor.id,
            f"meeting.{target.value}",
            meeting_subject(meeting_id),
            {
                "previous": previous.value,
                "state": target.value,
                "quorum_present": now_quorum["present"],
                "quorum_reached": now_quorum["reached"],
            },
        )
        data = await emit_meeting_state_changed(
            w,
            meeting_id,
            state=target.value,
            previous=previous.value,
            at=utc_iso(w.now),
            started_at=utc_iso(meeting.started_at) if meeting.started_at else None,
            closed_at=utc_iso(meeting.closed_at) if meeting.closed_at else None,
        )
    return data


async def set_participant(
    ctx: Context, actor: Principal, meeting_id: int, user_id: int, role: ParticipantRole | None
) -> None:
    """Add a participant, change their role, or (``role=None``) remove them; officers only.

    422 ``unknown_user``, ``chair_required`` (the last chair cannot go), 404
    ``participant_not_found`` when removing someone who is not there; 409 ``floor_taken``
    when the person holds the floor.
    """
    async with ctx.write() as w:
        meeting = await require_visible(w.session, meeting_id, actor, lock=True)
        await require_role(w.session, meeting, actor, OFFICER_ROLES, "change the participants")
        require_open(meeting)
        user = await w.session.get(User, user_id)
        if user is None or not user.active:
            raise Unprocessable(f"There is no active user {user_id}.", code="unknown_user")
        current = await get_participant(w.session, meeting_id, user_id)
        if role is None and current is None:
            raise NotFound(
                f"User {user_id} does not take part in meeting {meeting_id}.",
                code="participant_not_found",
            )
        if (
            current is not None
            and current.participant_role is ParticipantRole.CHAIR
            and (role is not ParticipantRole.CHAIR)
        ):
            chairs = (
                await w.session.execute(
                    select(func.count())
                    .select_from(Participant)
                    .where(
                        Participant.meeting_id == meeting_id,
                        Participant.role == ParticipantRole.CHAIR.value,
                    )
                )
            ).scalar_one()
            if chairs <= 1:
                raise Unprocessable("A meeting needs a chair.", code="chair_required")
        if role is None and await floor_holder(w.session, meeting_id) == user_id:
            raise Conflict(f"User {user_id} has the floor.", code="floor_taken")
        total = (
            await w.session.execute(
                select(func.count())
                .select_from(Participant)
                .where(Participant.meeting_id == meeting_id)
            )
        ).scalar_one()
        if current is None and total >= ctx.settings.meeting_max_participants:
            raise Unprocessable(
                f"A meeting has at most {ctx.settings.meeting_max_participants} participants.",
                code="too_many_participants",
            )
        previous = current.role if current is not None else None
        if role is None:
            assert current is not None
            await w.session.delete(current)
        elif current is None:
            w.session.add(Participant(meeting_id=meeting_id, user_id=user_id, role=role.value))
        else:
            current.role = role.value
        await w.session.flush()
        await w.audit(
            actor.id,
            "meeting.participant",
            meeting_subject(meeting_id),
            {
                "user_id": user_id,
                "role": role.value if role else None,
                "previous": previous,
            },
        )
        await emit_participants_changed(
            w,
            meeting_id,
            user_id=user_id,
            participants=await participants_json(w.session, meeting_id),
            quorum=await quorum(w.session, meeting),
        )


async def my_meetings(ctx: Context, actor: Principal) -> list[dict[str, Any]]:
    """The meetings the user takes part in (or created), newest first."""
    async with ctx.read() as session:
        rows = (
            await session.execute(
                select(Meeting, Participant.role)
                .outerjoin(
                    Participant,
                    (Participant.meeting_id == Meeting.id) & (Participant.user_id == actor.id),
                )
                .where(or_(Participant.id.is_not(None), Meeting.created_by == actor.id))
                .order_by(Meeting.starts_at.desc(), Meeting.id.desc())
            )
        ).all()
    return [meeting_summary(meeting, role) for meeting, role in rows]


async def _topic_seq(session: AsyncSession, meeting_id: int) -> int:
    # FOR SHARE waits for a writer that already took the topic's next seq to commit, and
    # keeps new writers of this meeting out until this snapshot is read (PostgreSQL runs
    # READ COMMITTED). SQLite reads one snapshot per transaction anyway.
    stmt = select(Topic.seq).where(Topic.name == meeting_topic(meeting_id))
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(read=True)
    seq = (await session.execute(stmt)).scalar_one_or_none()
    return int(seq or 0)


async def build_state(
    session: AsyncSession, meeting: Meeting, principal: Principal
) -> dict[str, Any]:
    """Every part of the state except ``seq`` (the caller reads it first, in one snapshot)."""
    me = await get_participant(session, meeting.id, principal.id)
    return {
        "id": meeting.id,
        "title": meeting.title,
        "starts_at": utc_iso(meeting.starts_at),
        "place": meeting.place,
        "state": meeting.state,
        "started_at": utc_iso(meeting.started_at) if meeting.started_at else None,
        "closed_at": utc_iso(meeting.closed_at) if meeting.closed_at else None,
        "created_by": meeting.created_by,
        "speech_limit_secs": meeting.speech_limit_secs,
        "you": {"user_id": principal.id, "role": me.role if me else None},
        "participants": await participants_json(session, meeting.id),
        "quorum": await quorum(session, meeting),
        "agenda": await agenda_json(session, meeting.id),
        "current_agenda_item_id": meeting.current_agenda_item_id,
        "presenter_id": meeting.presenter_id,
        "presentation": presentation_json(meeting),
        "speakers": await speakers_json(session, meeting.id),
    }


async def meeting_state(ctx: Context, meeting_id: int, principal: Principal) -> dict[str, Any]:
    """The whole current state of a meeting and its ``seq`` on ``meeting:{id}``.

    A tablet loads this, then subscribes to ``meeting:{id}`` from ``seq``: it gets exactly
    the events after this state. 404 ``meeting_not_found`` for those who may not see it.
    """
    async with ctx.read() as session:
        seq = await _topic_seq(session, meeting_id)
        meeting = await require_visible(session, meeting_id, principal)
        state = await build_state(session, meeting, principal)
        # --- polls -----------------------------------------------------------------
        # The voting feature adds its part here, read in the same snapshot:
        # state["polls"] = ...
        from meeting.media.service import list_recordings
        from meeting.polls.views import meeting_polls

        state["polls"] = await meeting_polls(session, meeting.id)
        state["recordings"] = await list_recordings(session, meeting.id)
        state["seq"] = seq
    return state
