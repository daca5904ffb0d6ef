"""Reading polls: the poll as the meeting state, the poll view, receipt checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from meeting.models import (
    OFFICER_ROLES,
)
from meeting.polls.electorate import electorate, present_electors
from meeting.polls.models import (
    Ballot,
    Poll,
    PollState,
    PollVoter,
)
from meeting.polls.rules import PollKind
from meeting.service import (
    get_participant,
    require_visible,
)
from server.auth.principal import Principal
from server.clock import utc_iso
from server.context import Context
from server.errors import Conflict, NotFound
from server.org.models import User
from server.org.service import display_names


async def lock_poll(session: AsyncSession, poll_id: int, *, exclusive: bool) -> Poll:
    """The poll, locked: shared for ballots, exclusive for open/close. 404 when unknown."""
    stmt = select(Poll).where(Poll.id == poll_id).with_for_update(read=not exclusive)
    poll = (await session.execute(stmt)).scalar_one_or_none()
    if poll is None:
        raise NotFound(f"Poll {poll_id} does not exist.", code="poll_not_found")
    return poll


async def get_poll(session: AsyncSession, poll_id: int) -> Poll:
    """The poll, unlocked; 404 ``poll_not_found``."""
    poll = await session.get(Poll, poll_id)
    if poll is None:
        raise NotFound(f"Poll {poll_id} does not exist.", code="poll_not_found")
    return poll


def choice_out(kind: str, stored: Sequence[str]) -> str | list[str]:
    """A stored choice as the API shows it: one word for yes/no/abstain, else a list."""
    if kind == PollKind.YES_NO_ABSTAIN.value:
        return stored[0]
    return list(stored)


def poll_summary(poll: Poll, cast: int | None = None) -> dict[str, Any]:
    """The poll as the meeting state and the poll events show it (no voters, no ballots)."""
    body: dict[str, Any] = {
        "id": poll.id,
        "meeting_id": poll.meeting_id,
        "agenda_item_id": poll.agenda_item_id,
        "title": poll.title,
        "kind": poll.kind,
        "options": list(poll.options),
        "max_choices": poll.max_choices,
        "secret": poll.secret,
        "rule": poll.rule,
        "state": poll.state,
        "duration_secs": poll.duration_secs,
        "opened_at": utc_iso(poll.opened_at) if poll.opened_at else None,
        "closes_at": utc_iso(poll.closes_at) if poll.closes_at else None,
        "closed_at": utc_iso(poll.closed_at) if poll.closed_at else None,
        "result": poll.result,
    }
    if cast is not None:
        body["cast"] = cast
    return body


async def cast_count(session: AsyncSession, poll_id: int) -> int:
    stmt = select(func.count()).select_from(PollVoter).where(PollVoter.poll_id == poll_id)
    return int((await session.execute(stmt)).scalar_one())


async def voter_ids(session: AsyncSession, poll_id: int) -> list[int]:
    stmt = select(PollVoter.user_id).where(PollVoter.poll_id == poll_id).order_by(PollVoter.user_id)
    return [int(uid) for uid in (await session.execute(stmt)).scalars()]


async def meeting_polls(session: AsyncSession, meeting_id: int) -> list[dict[str, Any]]:
    """Every poll of a meeting with its cast count, oldest first (for the meeting state)."""
    polls = (
        (await session.execute(select(Poll).where(Poll.meeting_id == meeting_id).order_by(Poll.id)))
        .scalars()
        .all()
    )
    counts = (
        dict(
            (
                await session.execute(
                    select(PollVoter.poll_id, func.count())
                    .where(PollVoter.poll_id.in_([p.id for p in polls]))
                    .group_by(PollVoter.poll_id)
                )
            )
            .tuples()
            .all()
        )
        if polls
        else {}
    )
    return [poll_summary(p, int(counts.get(p.id, 0))) for p in polls]


async def poll_view(ctx: Context, actor: Principal, poll_id: int) -> dict[str, Any]:
    """``GET /polls/{id}``: state, eligible, cast, and once closed the result, the list of
    counted ballots (receipt, choice) and, for a named poll, who voted what. Officers see
    who has not voted yet while the poll is open (names only)."""
    async with ctx.read() as session:
        poll = await get_poll(session, poll_id)
        meeting = await require_visible(session, poll.meeting_id, actor)
        body = poll_summary(poll)
        voters = await voter_ids(session, poll.id)
        if poll.lifecycle is PollState.CLOSED and poll.result is not None:
            body["eligible"] = poll.result["numbers"]["eligible"]
            body["cast"] = poll.result["numbers"]["cast"]
            rows = (
                await session.execute(
                    select(Ballot.receipt, Ballot.choice)
                    .where(Ballot.poll_id == poll.id)
                    .order_by(Ballot.receipt)
                )
            ).all()
            body["ballots"] = [{"receipt": r, "choice": choice_out(poll.kind, c)} for r, c in rows]
            body["ballots_digest"] = poll.ballots_digest
            if not poll.secret:
                named = (
                    await session.execute(
                        select(
                            PollVoter.user_id,
                            User.display_name,
                            PollVoter.choice,
                            PollVoter.receipt,
                        )
                        .join(User, User.id == PollVoter.user_id)
                        .where(PollVoter.poll_id == poll.id)
                        .order_by(PollVoter.user_id)
                    )
                ).all()
                body["voters"] = [
                    {
                        "user_id": uid,
                        "display_name": name,
                        "choice": choice_out(poll.kind, choice or []),
                        "receipt": receipt,
                    }
                    for uid, name, choice, receipt in named
                ]
            return body
        present = await present_electors(session, poll)
        body["eligible"] = len(set(present) | set(voters))
        body["cast"] = len(voters)
        if poll.lifecycle is PollState.OPEN:
            participant = await get_participant(session, meeting.id, actor.id)
            if participant is not None and participant.participant_role in OFFICER_ROLES:
                voted = set(voters)
                members = await electorate(session, poll)
                waiting = [uid for uid in members if uid not in voted]
                names = await display_names(session, waiting)
                present_set = set(present)
                body["not_voted"] = [
                    {
                        "user_id": uid,
                        "display_name": names.get(uid, ""),
                        "present": uid in present_set,
                    }
                    for uid in waiting
                ]
        return body


async def list_polls(ctx: Context, actor: Principal, meeting_id: int) -> list[dict[str, Any]]:
    """The polls of a meeting the actor may see."""
    async with ctx.read() as session:
        await require_visible(session, meeting_id, actor)
        return await meeting_polls(session, meeting_id)


async def check_receipt(
    ctx: Context, actor: Principal, poll_id: int, receipt: str
) -> dict[str, Any]:
    """Is the ballot behind this receipt in the box, and with which choice? Answered only
    once the poll is closed: while it is open, a voter could prove a choice to a coercer
    (409 ``poll_not_closed``)."""
    async with ctx.read() as session:
        poll = await get_poll(session, poll_id)
        await require_visible(session, poll.meeting_id, actor)
        if poll.lifecycle is not PollState.CLOSED:
            raise Conflict(
                f"Poll {poll.id} is still open: receipts are checked after the close.",
                code="poll_not_closed",
            )
        ballot = await session.get(Ballot, (poll.id, receipt.lower()))
        if ballot is None:
            return {"receipt": receipt, "counted": False}
        return {
            "receipt": ballot.receipt,
            "counted": True,
            "choice": choice_out(poll.kind, ballot.choice),
        }
