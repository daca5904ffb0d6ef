"""Attendance and quorum: delegates check in; chairs and secretaries mark anyone.

Every change sends ``attendance.changed`` with the participant's entry and the quorum as it
is after the change, and is audited (a check-in has legal weight: it decides the quorum and
who may vote).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from meeting.events import emit_attendance_changed
from meeting.models import OFFICER_ROLES, Attendance, ParticipantRole
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
from server.context import Context
from server.errors import Forbidden, Unprocessable


async def record_attendance(ctx: Context, actor: Principal, meeting_id: int, *,
                            present: bool, user_id: int | None = None,
                            reason: str = "") -> dict[str, Any]:
    """Check in or out (for oneself, only while in session), or mark someone (officers).

    Returns ``{"participant": entry, "quorum": {...}}``.
    """
    async with ctx.write() as w:
        meeting = await require_visible(w.session, meeting_id, actor, lock=True)
        me = await get_participant(w.session, meeting_id, actor.id)
        if me is None:
            raise Forbidden(f"You do not take part in meeting {meeting_id}.",
                            code="not_a_participant")
        officer = me.participant_role in OFFICER_ROLES
        target_id = actor.id if user_id is None else user_id
        self_service = user_id is None or (target_id == actor.id and not officer)
        if self_service:
            # A tablet's own check-in or check-out: only while the session sits.
            require_in_session(meeting)
        elif not officer:
            raise Forbidden("Only the chair or a secretary may record others' attendance.",
                            code="not_officer")
        else:
            require_open(meeting)
        target = await get_participant(w.session, meeting_id, target_id)
        if target is None:
            raise Unprocessable(f"User {target_id} does not take part in meeting {meeting_id}.",
                                code="not_a_participant")
        if self_service and reason:
            raise Unprocessable("Only the chair or a secretary records a reason for absence.",
                                code="reason_not_allowed")
        row = (await w.session.execute(
            select(Attendance).where(Attendance.meeting_id == meeting_id,
                                     Attendance.user_id == target_id))).scalar_one_or_none()
        if row is None:
            row = Attendance(meeting_id=meeting_id, user_id=target_id, present=False,
                             absent_reason="", marked_by=actor.id, updated_at=w.now)
            w.session.add(row)
        row.present = present
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
        await w.audit(actor.id, "meeting.attendance", meeting_subject(meeting_id), {
            "user_id": target_id, "present": present, "reason": row.absent_reason,
            "self": self_service, "counts": target.participant_role != ParticipantRole.GUEST,
            "quorum_present": now_quorum["present"], "quorum_reached": now_quorum["reached"],
        })
        await emit_attendance_changed(w, meeting_id, user_id=target_id, participant=entry,
                                      quorum=now_quorum)
    return {"participant": entry, "quorum": now_quorum}
