"""Who may vote in a poll: the members of the meeting when the poll opened.

The electorate is recorded in the poll at open; removing or adding participants while it
is open changes neither the base of the majority (``members``) nor who may vote. Presence
still counts as it is now: a member of the electorate checks in and out as before.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from meeting.models import Attendance
from meeting.polls.models import Poll
from meeting.service import member_ids, present_member_ids


async def electorate(session: AsyncSession, poll: Poll) -> list[int]:
    """The poll's electorate: recorded at open (the current members for a poll opened
    before electorates were recorded, or a draft)."""
    if poll.electorate is not None:
        return [int(uid) for uid in poll.electorate]
    return await member_ids(session, poll.meeting_id)


async def present_electors(session: AsyncSession, poll: Poll) -> list[int]:
    """The members of the poll's electorate recorded present right now."""
    if poll.electorate is None:
        return await present_member_ids(session, poll.meeting_id)
    voters = [int(uid) for uid in poll.electorate]
    if not voters:
        return []
    stmt = (
        select(Attendance.user_id)
        .where(
            Attendance.meeting_id == poll.meeting_id,
            Attendance.present.is_(True),
            Attendance.user_id.in_(voters),
        )
        .order_by(Attendance.user_id)
    )
    return [int(uid) for uid in (await session.execute(stmt)).scalars()]
