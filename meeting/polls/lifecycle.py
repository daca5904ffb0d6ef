"""A poll's life: draft → open → closed. Creating, opening and closing (counting the box,
fixing the result, rewriting a secret poll's rows)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from meeting.events import emit_poll_closed, emit_poll_created, emit_poll_opened
from meeting.models import (
    OFFICER_ROLES,
    AgendaItem,
)
from meeting.polls.electorate import electorate, present_electors
from meeting.polls.models import (
    MAX_OPTION_CHARS,
    Ballot,
    Poll,
    PollState,
    PollVoter,
    SealedBallot,
)
from meeting.polls.receipts import ballots_digest
from meeting.polls.rules import PollKind, Rule, decide
from meeting.polls.runtime import poll_runtime
from meeting.polls.sealing import BallotSeal
from meeting.polls.views import get_poll, lock_poll, poll_summary, voter_ids
from meeting.service import (
    member_ids,
    require_in_session,
    require_meeting,
    require_open,
    require_role,
    require_visible,
)
from server.auth.principal import Principal
from server.clock import utc_iso
from server.context import Context
from server.errors import (
    Conflict,
    Unprocessable,
)
from server.signing.results import result_closed


@dataclass(frozen=True)
class PollSpec:
    title: str
    kind: PollKind
    rule: Rule
    secret: bool
    options: list[str]
    max_choices: int
    agenda_item_id: int | None
    duration_secs: int | None


def check_spec(ctx: Context, spec: PollSpec) -> PollSpec:
    """422 for a poll whose shape makes no sense; returns the spec normalised."""
    title = spec.title.strip()
    if not title:
        raise Unprocessable("A poll needs a title.", code="invalid_title")
    settings = ctx.settings
    if spec.duration_secs is not None and not (
        1 <= spec.duration_secs <= settings.poll_max_duration_secs
    ):
        raise Unprocessable(
            f"duration_secs must be 1-{settings.poll_max_duration_secs}.", code="invalid_duration"
        )
    if spec.kind is PollKind.YES_NO_ABSTAIN:
        if spec.options or spec.max_choices != 1:
            raise Unprocessable(
                "A yes/no/abstain poll takes no options and one choice.", code="invalid_options"
            )
        return PollSpec(
            title, spec.kind, spec.rule, spec.secret, [], 1, spec.agenda_item_id, spec.duration_secs
        )
    options = [o.strip() for o in spec.options]
    if len(options) < 2 or len(options) > settings.poll_max_options:
        raise Unprocessable(
            f"A choice poll needs 2-{settings.poll_max_options} options.", code="invalid_options"
        )
    if any(not o or len(o) > MAX_OPTION_CHARS for o in options):
        raise Unprocessable(
            f"Options must be 1-{MAX_OPTION_CHARS} characters.", code="invalid_options"
        )
    if len(set(options)) != len(options):
        raise Unprocessable("Options must differ from each other.", code="duplicate_options")
    if not 1 <= spec.max_choices <= len(options):
        raise Unprocessable(
            "max_choices must be between 1 and the number of options.", code="invalid_max_choices"
        )
    return PollSpec(
        title,
        spec.kind,
        spec.rule,
        spec.secret,
        options,
        spec.max_choices,
        spec.agenda_item_id,
        spec.duration_secs,
    )


async def create_poll(
    ctx: Context, actor: Principal, meeting_id: int, spec: PollSpec
) -> dict[str, Any]:
    """A chair or secretary drafts a poll on the meeting (optionally on an agenda item)."""
    spec = check_spec(ctx, spec)
    async with ctx.write() as w:
        meeting = await require_visible(w.session, meeting_id, actor, lock=True)
        await require_role(w.session, meeting, actor, OFFICER_ROLES, "run polls")
        require_open(meeting)
        if spec.agenda_item_id is not None:
            item = await w.session.get(AgendaItem, spec.agenda_item_id)
            if item is None or item.meeting_id != meeting.id:
                raise Unprocessable(
                    f"Agenda item {spec.agenda_item_id} is not on this meeting's agenda.",
                    code="agenda_item_not_found",
                )
        poll = Poll(
            meeting_id=meeting.id,
            agenda_item_id=spec.agenda_item_id,
            title=spec.title,
            kind=spec.kind.value,
            options=spec.options,
            max_choices=spec.max_choices,
            secret=spec.secret,
            rule=spec.rule.value,
            state=PollState.DRAFT.value,
            duration_secs=spec.duration_secs,
            created_by=actor.id,
            created_at=w.now,
        )
        w.session.add(poll)
        await w.session.flush()
        summary = poll_summary(poll, 0)
        await emit_poll_created(w, meeting.id, poll=summary)
        await w.audit(
            actor.id,
            "poll.create",
            f"poll:{poll.id}",
            {
                k: summary[k]
                for k in (
                    "meeting_id",
                    "agenda_item_id",
                    "title",
                    "kind",
                    "options",
                    "max_choices",
                    "secret",
                    "rule",
                    "duration_secs",
                )
            },
        )
    return summary


async def open_poll(ctx: Context, actor: Principal, poll_id: int) -> dict[str, Any]:
    """draft → open, while the meeting is in session; starts the duration if it has one."""
    async with ctx.write() as w:
        poll = await get_poll(w.session, poll_id)
        meeting = await require_visible(w.session, poll.meeting_id, actor, lock=True)
        await require_role(w.session, meeting, actor, OFFICER_ROLES, "run polls")
        poll = await lock_poll(w.session, poll_id, exclusive=True)
        _transition(poll, PollState.OPEN)
        require_in_session(meeting)
        poll.state = PollState.OPEN.value
        poll.opened_at = w.now
        # Who may vote, and the base of the majority, from now until the close.
        poll.electorate = await member_ids(w.session, meeting.id)
        if poll.duration_secs is not None:
            poll.closes_at = w.now + timedelta(seconds=poll.duration_secs)
        summary = poll_summary(poll, 0)
        await emit_poll_opened(w, meeting.id, poll=summary)
        await w.audit(actor.id, "poll.open", f"poll:{poll.id}", {"closes_at": summary["closes_at"]})
        w.after_commit(poll_runtime(ctx).deadlines_changed.set)
    return summary


def _transition(poll: Poll, target: PollState) -> None:
    current = poll.lifecycle
    if current.may_become(target):
        return
    if current is PollState.CLOSED:
        raise Conflict(f"Poll {poll.id} is closed.", code="poll_closed")
    if current is PollState.DRAFT:
        raise Conflict(f"Poll {poll.id} has not been opened.", code="poll_not_open")
    raise Conflict(f"Poll {poll.id} is already open.", code="poll_already_open")


async def close_poll(ctx: Context, actor: Principal | None, poll_id: int) -> dict[str, Any] | None:
    """open → closed: count the box, fix the result, publish ``poll.closed``.

    ``actor=None`` is the closer task at the poll's deadline; it does nothing (returns None)
    when someone closed the poll first. Two closes racing: the second gets 409 poll_closed.
    """
    async with ctx.write() as w:
        session = w.session
        poll = await lock_poll(session, poll_id, exclusive=True)
        meeting = await require_meeting(session, poll.meeting_id)
        if actor is not None:
            await require_visible(session, meeting.id, actor)
            await require_role(session, meeting, actor, OFFICER_ROLES, "run polls")
        elif poll.lifecycle is not PollState.OPEN:
            return None
        _transition(poll, PollState.CLOSED)
        if poll.secret:
            await _unseal_box(session, poll, poll_runtime(ctx).seal)
        box = [
            (str(r), list(c))
            for r, c in (
                await session.execute(
                    select(Ballot.receipt, Ballot.choice)
                    .where(Ballot.poll_id == poll.id)
                    .order_by(Ballot.receipt)
                )
            ).all()
        ]
        voters = await voter_ids(session, poll.id)
        if len(box) != len(voters):
            # Every ballot is written with its roll entry in one transaction; a mismatch
            # means the stored data was changed behind the server's back.
            raise RuntimeError(f"poll {poll.id}: {len(box)} ballots but {len(voters)} on the roll")
        members = await electorate(session, poll)
        present = await present_electors(session, poll)
        result = decide(
            poll.poll_kind,
            poll.poll_rule,
            poll.options,
            poll.max_choices,
            [c for _, c in box],
            members=len(members),
            present=len(present),
            eligible=len(set(present) | set(voters)),
        ).as_dict()
        digest = ballots_digest(poll.id, box)
        if poll.secret:
            await _rewrite_secret_rows(session, poll.id)
            w.after_commit(poll_runtime(ctx).scrub_wanted.set)
        poll.state = PollState.CLOSED.value
        poll.closed_at = w.now
        poll.closed_by = actor.id if actor else None
        poll.result = result
        poll.ballots_digest = digest
        await emit_poll_closed(
            w,
            meeting.id,
            poll_id=poll.id,
            state=poll.state,
            closed_at=utc_iso(w.now),
            result=result,
        )
        await w.audit(
            actor.id if actor else None,
            "poll.close",
            f"poll:{poll.id}",
            {"result": result, "ballots_digest": digest, "by": "chair" if actor else "deadline"},
        )
        # The organisation seals the result sheet once this has committed.
        w.after_commit(functools.partial(result_closed, ctx, poll.id))
        summary = poll_summary(poll, len(box))
    return summary


async def _unseal_box(session: AsyncSession, poll: Poll, seal: BallotSeal) -> None:
    """A secret poll's sealed ballots become its plain box, in the closing transaction
    (``meeting.polls.sealing``); the seals are deleted."""
    sealed = (
        (await session.execute(select(SealedBallot.sealed).where(SealedBallot.poll_id == poll.id)))
        .scalars()
        .all()
    )
    if not sealed:
        return
    ballots = sorted(seal.unseal(poll.id, bytes(blob)) for blob in sealed)
    await session.execute(delete(SealedBallot).where(SealedBallot.poll_id == poll.id))
    await session.execute(
        insert(Ballot),
        [{"poll_id": poll.id, "receipt": receipt, "choice": choice} for receipt, choice in ballots],
    )


async def _rewrite_secret_rows(session: AsyncSession, poll_id: int) -> None:
    """Write the roll and the box again, sorted, in the closing transaction.

    On PostgreSQL each row carries the id of the transaction that wrote it (``xmin``) and
    its physical place (``ctid``): a roll entry and its ballot, written together, would
    share both. Rewritten here, every row of the poll has the closing transaction's id and
    sits in sorted order. (SQLite's WITHOUT ROWID tables never had an insertion order.)
    """
    ballots = (
        await session.execute(
            select(Ballot.receipt, Ballot.choice)
            .where(Ballot.poll_id == poll_id)
            .order_by(Ballot.receipt)
        )
    ).all()
    roll = (
        await session.execute(
            select(PollVoter.user_id, PollVoter.retry_check, PollVoter.voted_at)
            .where(PollVoter.poll_id == poll_id)
            .order_by(PollVoter.user_id)
        )
    ).all()
    await session.execute(delete(Ballot).where(Ballot.poll_id == poll_id))
    await session.execute(delete(PollVoter).where(PollVoter.poll_id == poll_id))
    if ballots:
        await session.execute(
            insert(Ballot), [{"poll_id": poll_id, "receipt": r, "choice": c} for r, c in ballots]
        )
    if roll:
        await session.execute(
            insert(PollVoter),
            [
                {
                    "poll_id": poll_id,
                    "user_id": uid,
                    "retry_check": check,
                    "choice": None,
                    "receipt": None,
                    "voted_at": at,
                }
                for uid, check, at in roll
            ],
        )
