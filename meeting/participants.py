"""Who takes part in a meeting, in which role, who is present, and the quorum.

The lowest layer of the meeting package: every other meeting module asks here whether a
meeting exists and what the acting user may do in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from meeting.models import (
    MEMBER_ROLES,
    OFFICER_ROLES,
    Attendance,
    AttendanceMode,
    Meeting,
    MeetingState,
    Participant,
    ParticipantRole,
)
from server.auth.principal import Principal
from server.clock import utc_iso
from server.errors import Conflict, Forbidden, NotFound
from server.org.models import User


def meeting_topic(meeting_id: int) -> str:
    """The event topic every tablet of a meeting follows."""
    return f"meeting:{meeting_id}"


def meeting_subject(meeting_id: int) -> str:
    """The audit subject of a meeting."""
    return f"meeting:{meeting_id}"


async def require_meeting(session: AsyncSession, meeting_id: int, *, lock: bool = False) -> Meeting:
    """The meeting, or 404 ``meeting_not_found``.

    ``lock=True`` (inside a write) takes the meeting's row lock, so every change of one
    meeting is serialised on PostgreSQL as it is on SQLite.
    """
    stmt = select(Meeting).where(Meeting.id == meeting_id)
    if lock:
        stmt = stmt.with_for_update()
    meeting = (await session.execute(stmt)).scalar_one_or_none()
    if meeting is None:
        raise NotFound(f"Meeting {meeting_id} does not exist.", code="meeting_not_found")
    return meeting


async def get_participant(
    session: AsyncSession, meeting_id: int, user_id: int
) -> Participant | None:
    """The user's participation in the meeting, or None."""
    stmt = select(Participant).where(
        Participant.meeting_id == meeting_id, Participant.user_id == user_id
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def is_present(session: AsyncSession, meeting_id: int, user_id: int) -> bool:
    """True when the user is recorded present at the meeting right now."""
    stmt = select(Attendance.present).where(
        Attendance.meeting_id == meeting_id, Attendance.user_id == user_id
    )
    return bool((await session.execute(stmt)).scalar_one_or_none())


async def member_ids(session: AsyncSession, meeting_id: int) -> list[int]:
    """The members of the body at this meeting (chairs and delegates; never guests)."""
    stmt = (
        select(Participant.user_id)
        .where(
            Participant.meeting_id == meeting_id,
            Participant.role.in_([role.value for role in MEMBER_ROLES]),
        )
        .order_by(Participant.user_id)
    )
    return [int(uid) for uid in (await session.execute(stmt)).scalars()]


async def present_member_ids(
    session: AsyncSession, meeting_id: int, *, remote: bool = True
) -> list[int]:
    """Members recorded present right now (``remote=False``: only those in the hall)."""
    stmt = (
        select(Participant.user_id)
        .join(
            Attendance,
            (Attendance.meeting_id == Participant.meeting_id)
            & (Attendance.user_id == Participant.user_id),
        )
        .where(
            Participant.meeting_id == meeting_id,
            Participant.role.in_([role.value for role in MEMBER_ROLES]),
            Attendance.present.is_(True),
        )
        .order_by(Participant.user_id)
    )
    if not remote:
        stmt = stmt.where(Attendance.mode != AttendanceMode.REMOTE.value)
    return [int(uid) for uid in (await session.execute(stmt)).scalars()]


async def may_view(session: AsyncSession, meeting: Meeting, principal: Principal) -> bool:
    """Participants, the meeting's creator and administrators may read a meeting."""
    if principal.is_admin or meeting.created_by == principal.id:
        return True
    return await get_participant(session, meeting.id, principal.id) is not None


async def require_visible(
    session: AsyncSession, meeting_id: int, principal: Principal, *, lock: bool = False
) -> Meeting:
    """The meeting if the principal may see it; otherwise 404 as if it did not exist."""
    meeting = await require_meeting(session, meeting_id, lock=lock)
    if not await may_view(session, meeting, principal):
        raise NotFound(f"Meeting {meeting_id} does not exist.", code="meeting_not_found")
    return meeting


async def require_role(
    session: AsyncSession,
    meeting: Meeting,
    principal: Principal,
    roles: frozenset[ParticipantRole],
    what: str,
) -> Participant:
    """The principal's participation if its role is one of ``roles``; otherwise 403."""
    participant = await get_participant(session, meeting.id, principal.id)
    if participant is None:
        raise Forbidden(f"You do not take part in meeting {meeting.id}.", code="not_a_participant")
    if participant.participant_role not in roles:
        names = " or ".join(sorted(role.value for role in roles))
        raise Forbidden(f"Only the meeting's {names} may {what}.", code=f"not_{_code(roles)}")
    return participant


def _code(roles: frozenset[ParticipantRole]) -> str:
    if roles == frozenset({ParticipantRole.CHAIR}):
        return "chair"
    if roles == OFFICER_ROLES:
        return "officer"
    return "allowed"


def require_open(meeting: Meeting) -> None:
    """409 ``meeting_closed`` when the meeting is closed (read-only)."""
    if not meeting.lifecycle.is_open:
        raise Conflict(
            f"Meeting {meeting.id} is closed; nothing in it can change.", code="meeting_closed"
        )


def require_in_session(meeting: Meeting) -> None:
    """409 unless the meeting is in session (``meeting_closed`` when it is closed)."""
    require_open(meeting)
    if meeting.lifecycle is not MeetingState.IN_SESSION:
        raise Conflict(
            f"Meeting {meeting.id} is not in session (it is {meeting.state}).",
            code="meeting_not_in_session",
        )


def quorum_json(meeting: Meeting, members: int, present: int, remote: int = 0) -> dict[str, Any]:
    """present/required/reached under the meeting's rule (a fraction of all members).

    ``remote`` of the ``present`` attend remotely; they count only if the rule says so.
    """
    numerator, denominator = meeting.quorum_numerator, meeting.quorum_denominator
    remote_counts = meeting.remote_counts_for_quorum is not False
    counted = present if remote_counts else present - remote
    # Ceiling in integers: "at least two thirds of 95" is 64, never 63.33 rounded down.
    required = -(-members * numerator // denominator)
    return {
        "rule": {
            "numerator": numerator,
            "denominator": denominator,
            "remote_counts": remote_counts,
        },
        "members": members,
        "present": counted,
        "remote": remote,
        "required": required,
        "reached": members > 0 and counted >= required,
    }


async def quorum(session: AsyncSession, meeting: Meeting) -> dict[str, Any]:
    """The meeting's quorum right now."""
    members = await member_ids(session, meeting.id)
    present = await present_member_ids(session, meeting.id)
    in_hall = await present_member_ids(session, meeting.id, remote=False)
    return quorum_json(meeting, len(members), len(present), len(present) - len(in_hall))


def attendance_entry(
    participant: Participant, user: User, attendance: Attendance | None
) -> dict[str, Any]:
    """One participant as the meeting state shows them, with their attendance."""
    return {
        "user_id": participant.user_id,
        "display_name": user.display_name,
        "unit_id": user.unit_id,
        "role": participant.role,
        "present": bool(attendance and attendance.present),
        "checked_in_at": utc_iso(attendance.checked_in_at)
        if attendance and attendance.checked_in_at
        else None,
        "absent_reason": attendance.absent_reason if attendance else "",
        "marked_by": attendance.marked_by if attendance else None,
        "mode": attendance.mode if attendance else AttendanceMode.HALL.value,
        "media": media_json(attendance),
    }


def media_json(attendance: Attendance | None) -> dict[str, Any] | None:
    """A remote participant's live media session, its quality and the microphone controls."""
    if attendance is None or attendance.media_session_id is None:
        return None
    return {
        "session_id": attendance.media_session_id,
        "connection": attendance.connection,
        "muted": attendance.muted_by is not None,
        "muted_by": attendance.muted_by,
        "unmute_requested": attendance.unmute_requested,
    }


async def participants_json(
    session: AsyncSession, meeting_id: int, user_ids: Sequence[int] | None = None
) -> list[dict[str, Any]]:
    """Every participant (or those in ``user_ids``) with attendance, ordered by user id."""
    stmt = (
        select(Participant, User, Attendance)
        .join(User, User.id == Participant.user_id)
        .outerjoin(
            Attendance,
            (Attendance.meeting_id == Participant.meeting_id)
            & (Attendance.user_id == Participant.user_id),
        )
        .where(Participant.meeting_id == meeting_id)
        .order_by(Participant.user_id)
    )
    if user_ids is not None:
        stmt = stmt.where(Participant.user_id.in_(list(user_ids)))
    rows = (await session.execute(stmt)).all()
    return [attendance_entry(p, u, a) for p, u, a in rows]
