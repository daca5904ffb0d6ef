"""Attendance and quorum: delegates check in; chairs and secretaries mark anyone.

Every change sends ``attendance.changed`` with the participant's entry and the quorum as it
is after the change, and is audited (a check-in has legal weight: it decides the quorum and
who may vote).

Remote attendance: joining the sitting's media while the session sits checks the
participant in as ``remote`` (``attend_remotely``); leaving it on purpose, or being removed
by the chair, checks a remote participant out (``end_remote_attendance``); a dropped
connection keeps the check-in, so the delegate may rejoin. The live session, its connection
quality and the chair's microphone controls are kept on the same row, so every node's
meeting state shows them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from meeting.events import emit_attendance_changed
from meeting.models import (
    OFFICER_ROLES,
    Attendance,
    AttendanceMode,
    Meeting,
    MeetingState,
    ParticipantRole,
)
from meeting.participants import (
    get_participant,
    meeting_subject,
    participants_json,
    quorum,
    require_in_session,
    require_open,
    require_visible,
)
from server.auth.principal import Principal
from server.context import Context, Write
from server.errors import Forbidden, Unprocessable


async def record_attendance(
    ctx: Context,
    actor: Principal,
    meeting_id: int,
    *,
    present: bool,
    user_id: int | None = None,
    reason: str = "",
) -> dict[str, Any]:
    """Check in or out (for oneself, only while in session), or mark someone (officers).

    Returns ``{"participant": entry, "quorum": {...}}``.
    """
    async with ctx.write() as w:
        meeting = await require_visible(w.session, meeting_id, actor, lock=True)
        me = await get_participant(w.session, meeting_id, actor.id)
        if me is None:
            raise Forbidden(
                f"You do not take part in meeting {meeting_id}.", code="not_a_participant"
            )
        officer = me.participant_role in OFFICER_ROLES
        target_id = actor.id if user_id is None else user_id
        self_service = user_id is None or (target_id == actor.id and not officer)
        if self_service:
            # A tablet's own check-in or check-out: only while the session sits.
            require_in_session(meeting)
        elif not officer:
            raise Forbidden(
                "Only the chair or a secretary may record others' attendance.", code="not_officer"
            )
        else:
            require_open(meeting)
        target = await get_participant(w.session, meeting_id, target_id)
        if target is None:
            raise Unprocessable(
                f"User {target_id} does not take part in meeting {meeting_id}.",
                code="not_a_participant",
            )
        if self_service and reason:
            raise Unprocessable(
                "Only the chair or a secretary records a reason for absence.",
                code="reason_not_allowed",
            )
        row = (
            await w.session.execute(
                select(Attendance).where(
                    Attendance.meeting_id == meeting_id, Attendance.user_id == target_id
                )
            )
        ).scalar_one_or_none()
        if row is None:
            row = Attendance(
                meeting_id=meeting_id,
                user_id=target_id,
                present=False,
                absent_reason="",
                marked_by=actor.id,
                updated_at=w.now,
            )
            w.session.add(row)
        row.present = present
        if not self_service:
            # The chair marking someone in the hall (or absent) ends a remote check-in.
            row.mode = AttendanceMode.HALL.value
        row.marked_by = actor.id
        row.updated_at = w.now
        if present:
            row.absent_reason = ""
            if row.checked_in_at is None:
                row.checked_in_at = w.now
        else:
            row.absent_reason = reason
        await w.session.flush()
        entry = (await participants_json(w.session, meeting_id, [target_id]))[0]
        now_quorum = await quorum(w.session, meeting)
        await w.audit(
            actor.id,
            "meeting.attendance",
            meeting_subject(meeting_id),
            {
                "user_id": target_id,
                "present": present,
                "reason": row.absent_reason,
                "self": self_service,
                "counts": target.participant_role != ParticipantRole.GUEST,
                "quorum_present": now_quorum["present"],
                "quorum_reached": now_quorum["reached"],
            },
        )
        await emit_attendance_changed(
            w, meeting_id, user_id=target_id, participant=entry, quorum=now_quorum
        )
    return {"participant": entry, "quorum": now_quorum}


async def attendance_row(w: Write, meeting_id: int, user_id: int) -> Attendance:
    """The participant's attendance row, made (absent, in the hall) if there is none yet."""
    row = (
        await w.session.execute(
            select(Attendance).where(
                Attendance.meeting_id == meeting_id, Attendance.user_id == user_id
            )
        )
    ).scalar_one_or_none()
    if row is None:
        row = Attendance(
            meeting_id=meeting_id,
            user_id=user_id,
            present=False,
            absent_reason="",
            marked_by=user_id,
            updated_at=w.now,
            mode=AttendanceMode.HALL.value,
            unmute_requested=False,
        )
        w.session.add(row)
    return row


async def _announce(
    w: Write, meeting: Meeting, row: Attendance, actor_id: int | None, audit: dict[str, Any] | None
) -> dict[str, Any]:
    await w.session.flush()
    entry = (await participants_json(w.session, meeting.id, [row.user_id]))[0]
    now_quorum = await quorum(w.session, meeting)
    if audit is not None:
        await w.audit(
            actor_id,
            "meeting.attendance",
            meeting_subject(meeting.id),
            {
                **audit,
                "user_id": row.user_id,
                "present": row.present,
                "mode": row.mode,
                "quorum_present": now_quorum["present"],
                "quorum_reached": now_quorum["reached"],
            },
        )
    await emit_attendance_changed(
        w, meeting.id, user_id=row.user_id, participant=entry, quorum=now_quorum
    )
    return entry


async def attend_remotely(
    w: Write, meeting: Meeting, user_id: int, session_id: str
) -> dict[str, Any]:
    """Inside the media join's write: the participant's live session, and, while the
    session sits, their check-in as remote (audited: it counts toward the quorum if the
    meeting's rule says so). Sends ``attendance.changed``; returns the participant entry."""
    row = await attendance_row(w, meeting.id, user_id)
    checks_in = meeting.lifecycle is MeetingState.IN_SESSION and (
        not row.present or row.mode != AttendanceMode.REMOTE.value
    )
    row.media_session_id = session_id
    row.connection = "good"
    row.muted_by = None
    row.unmute_requested = False
    if checks_in:
        row.present = True
        row.mode = AttendanceMode.REMOTE.value
        row.absent_reason = ""
        row.marked_by = user_id
        row.updated_at = w.now
        if row.checked_in_at is None:
            row.checked_in_at = w.now
    return await _announce(
        w, meeting, row, user_id, {"self": True, "session_id": session_id} if checks_in else None
    )


async def end_remote_attendance(
    w: Write,
    meeting: Meeting,
    user_id: int,
    session_id: str,
    *,
    check_out: bool,
    actor_id: int | None,
) -> None:
    """Inside the write of a media session's end: clear the live session if it is this one;
    ``check_out`` (left on purpose, removed by the chair) also checks a remote participant
    out. A later session of the same participant is left alone."""
    row = await attendance_row(w, meeting.id, user_id)
    if row.media_session_id != session_id:
        return
    row.media_session_id = None
    row.connection = None
    row.muted_by = None
    row.unmute_requested = False
    audit = None
    if check_out and row.present and row.mode == AttendanceMode.REMOTE.value:
        row.present = False
        row.marked_by = actor_id if actor_id is not None else user_id
        row.updated_at = w.now
        audit = {"self": actor_id == user_id, "session_id": session_id}
    await _announce(w, meeting, row, actor_id, audit)


async def live_remote_row(
    w: Write, meeting_id: int, user_id: int, session_id: str
) -> Attendance | None:
    """The attendance row while ``session_id`` is the participant's live session."""
    row = await attendance_row(w, meeting_id, user_id)
    return row if row.media_session_id == session_id else None


async def participant_entry(w: Write, meeting_id: int, user_id: int) -> dict[str, Any]:
    """The participant as the meeting state shows them, with what this write changed."""
    await w.session.flush()
    return (await participants_json(w.session, meeting_id, [user_id]))[0]
