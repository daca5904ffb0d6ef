"""Polls and ballots: create, open, cast, close; the closer and progress tasks.

Every state change goes through ``ctx.write()``. The poll row is the lock that orders
ballots against the close: a ballot takes it shared (``FOR SHARE`` on PostgreSQL; SQLite
has one writer anyway) and the close takes it exclusively, so a ballot either commits
before the close counts the box or sees the poll closed and is refused with
``poll_closed``. The tally published at close is computed from the stored ballots in that
same transaction, so published tally == stored ballots.

Secret polls: see ``meeting.polls.models`` and README "Secret ballots". Nothing in this
module logs, audits or emits a choice of a secret poll, or anything that ties a voter to
a ballot.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from meeting.models import (
    MEMBER_ROLES,
    OFFICER_ROLES,
    AgendaItem,
    Attendance,
    Meeting,
    Participant,
)
from meeting.polls.models import (
    MAX_OPTION_CHARS,
    RECEIPT_CHARS,
    Ballot,
    Poll,
    PollState,
    PollVoter,
)
from meeting.polls.rules import ChoiceError, PollKind, Rule, canonical_choice, decide
from meeting.service import (
    get_participant,
    meeting_topic,
    member_ids,
    present_member_ids,
    require_in_session,
    require_meeting,
    require_open,
    require_role,
    require_visible,
)
from server.audit import AuditHead, AuditRecord, record_hash
from server.auth.principal import Principal
from server.clock import utc_iso
from server.context import Context, Write
from server.errors import (
    ApiError,
    Conflict,
    Forbidden,
    NotFound,
    TooManyRequests,
    Unprocessable,
)
from server.org.models import User
from server.org.service import display_names
from server.signing.results import result_closed

log = logging.getLogger("dienhong.polls")

EXTENSION = "polls"
# Domain separation for the two hashes derived from a ballot's idempotency key.
RECEIPT_DOMAIN = "dienhong/poll-receipt/v1"
RETRY_DOMAIN = "dienhong/poll-retry/v1"
# A ballot that loses a unique-key race (two tablets of one voter, two nodes) is retried
# this many times; the retry then sees the stored ballot and answers from it.
CAST_ATTEMPTS = 3


# --- runtime state of this node ---------------------------------------------------------


@dataclass
class PollRuntime:
    """Per-node state: the ballot queue, wake-ups of the closer, the progress publisher
    and the scrubber."""

    deadlines_changed: asyncio.Event = field(default_factory=asyncio.Event)
    # The queue of ballots waiting for the writer; None while no writer runs.
    ballots: asyncio.Queue[PendingBallot] | None = None
    progress_wanted: asyncio.Event = field(default_factory=asyncio.Event)
    progress_pending: set[int] = field(default_factory=set)
    # A secret poll closed: the dead row versions its rewrite left should be vacuumed.
    scrub_wanted: asyncio.Event = field(default_factory=asyncio.Event)

    def touch_progress(self, poll_id: int) -> None:
        self.progress_pending.add(poll_id)
        self.progress_wanted.set()


def runtime(ctx: Context) -> PollRuntime:
    """This node's poll runtime, kept in ``ctx.extensions``."""
    rt = ctx.extensions.get(EXTENSION)
    if rt is None:
        rt = ctx.extensions[EXTENSION] = PollRuntime()
    assert isinstance(rt, PollRuntime)
    return rt


# --- receipts ---------------------------------------------------------------------------


def _digest(*parts: Any) -> str:
    encoded = json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(encoded.encode()).hexdigest()


def receipt_for(poll_id: int, idempotency_key: str) -> str:
    """The receipt of a ballot: derived from the tablet's secret key, never from the voter."""
    return _digest(RECEIPT_DOMAIN, poll_id, idempotency_key)[:RECEIPT_CHARS]


def retry_check_for(poll_id: int, user_id: int, idempotency_key: str,
                    choice: Sequence[str]) -> str:
    """What the roll keeps to recognise a retry of the very same ballot by the same voter."""
    return _digest(RETRY_DOMAIN, poll_id, user_id, idempotency_key, list(choice))


def ballots_digest(poll_id: int, ballots: Sequence[tuple[str, Sequence[str]]]) -> str:
    """sha256 over the published list of counted ballots (sorted by receipt)."""
    return _digest("dienhong/poll-ballots/v1", poll_id,
                   [[receipt, list(choice)] for receipt, choice in sorted(ballots)])


# --- reading ----------------------------------------------------------------------------


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
        "id": poll.id, "meeting_id": poll.meeting_id, "agenda_item_id": poll.agenda_item_id,
        "title": poll.title, "kind": poll.kind, "options": list(poll.options),
        "max_choices": poll.max_choices, "secret": poll.secret, "rule": poll.rule,
        "state": poll.state, "duration_secs": poll.duration_secs,
        "opened_at": utc_iso(poll.opened_at) if poll.opened_at else None,
        "closes_at": utc_iso(poll.closes_at) if poll.closes_at else None,
        "closed_at": utc_iso(poll.closed_at) if poll.closed_at else None,
        "result": poll.result,
    }
    if cast is not None:
        body["cast"] = cast
    return body


async def _cast_count(session: AsyncSession, poll_id: int) -> int:
    stmt = select(func.count()).select_from(PollVoter).where(PollVoter.poll_id == poll_id)
    return int((await session.execute(stmt)).scalar_one())


async def _voter_ids(session: AsyncSession, poll_id: int) -> list[int]:
    stmt = select(PollVoter.user_id).where(PollVoter.poll_id == poll_id).order_by(
        PollVoter.user_id)
    return [int(uid) for uid in (await session.execute(stmt)).scalars()]


async def meeting_polls(session: AsyncSession, meeting_id: int) -> list[dict[str, Any]]:
    """Every poll of a meeting with its cast count, oldest first (for the meeting state)."""
    polls = (await session.execute(
        select(Poll).where(Poll.meeting_id == meeting_id).order_by(Poll.id))).scalars().all()
    counts = dict((await session.execute(
        select(PollVoter.poll_id, func.count())
        .where(PollVoter.poll_id.in_([p.id for p in polls]))
        .group_by(PollVoter.poll_id))).tuples().all()) if polls else {}
    return [poll_summary(p, int(counts.get(p.id, 0))) for p in polls]


async def poll_view(ctx: Context, actor: Principal, poll_id: int) -> dict[str, Any]:
    """``GET /polls/{id}``: state, eligible, cast, and once closed the result, the list of
    counted ballots (receipt, choice) and, for a named poll, who voted what. Officers see
    who has not voted yet while the poll is open (names only)."""
    async with ctx.read() as session:
        poll = await get_poll(session, poll_id)
        meeting = await require_visible(session, poll.meeting_id, actor)
        body = poll_summary(poll)
        voters = await _voter_ids(session, poll.id)
        if poll.lifecycle is PollState.CLOSED and poll.result is not None:
            body["eligible"] = poll.result["numbers"]["eligible"]
            body["cast"] = poll.result["numbers"]["cast"]
            rows = (await session.execute(
                select(Ballot.receipt, Ballot.choice).where(Ballot.poll_id == poll.id)
                .order_by(Ballot.receipt))).all()
            body["ballots"] = [{"receipt": r, "choice": choice_out(poll.kind, c)}
                               for r, c in rows]
            body["ballots_digest"] = poll.ballots_digest
            if not poll.secret:
                named = (await session.execute(
                    select(PollVoter.user_id, User.display_name, PollVoter.choice,
                           PollVoter.receipt)
                    .join(User, User.id == PollVoter.user_id)
                    .where(PollVoter.poll_id == poll.id).order_by(PollVoter.user_id))).all()
                body["voters"] = [
                    {"user_id": uid, "display_name": name,
                     "choice": choice_out(poll.kind, choice or []), "receipt": receipt}
                    for uid, name, choice, receipt in named
                ]
            return body
        present = await present_member_ids(session, poll.meeting_id)
        body["eligible"] = len(set(present) | set(voters))
        body["cast"] = len(voters)
        if poll.lifecycle is PollState.OPEN:
            participant = await get_participant(session, meeting.id, actor.id)
            if participant is not None and participant.participant_role in OFFICER_ROLES:
                voted = set(voters)
                members = await member_ids(session, poll.meeting_id)
                waiting = [uid for uid in members if uid not in voted]
                names = await display_names(session, waiting)
                present_set = set(present)
                body["not_voted"] = [
                    {"user_id": uid, "display_name": names.get(uid, ""),
                     "present": uid in present_set}
                    for uid in waiting
                ]
        return body


async def list_polls(ctx: Context, actor: Principal, meeting_id: int) -> list[dict[str, Any]]:
    """The polls of a meeting the actor may see."""
    async with ctx.read() as session:
        await require_visible(session, meeting_id, actor)
        return await meeting_polls(session, meeting_id)


async def check_receipt(ctx: Context, actor: Principal, poll_id: int,
                        receipt: str) -> dict[str, Any]:
    """Is the ballot behind this receipt in the box, and with which choice?"""
    async with ctx.read() as session:
        poll = await get_poll(session, poll_id)
        await require_visible(session, poll.meeting_id, actor)
        ballot = await session.get(Ballot, (poll.id, receipt.lower()))
        if ballot is None:
            return {"receipt": receipt, "counted": False}
        return {"receipt": ballot.receipt, "counted": True,
                "choice": choice_out(poll.kind, ballot.choice)}


# --- creating, opening, closing -----------------------------------------------------------


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
            1 <= spec.duration_secs <= settings.poll_max_duration_secs):
        raise Unprocessable(
            f"duration_secs must be 1-{settings.poll_max_duration_secs}.", code="invalid_duration")
    if spec.kind is PollKind.YES_NO_ABSTAIN:
        if spec.options or spec.max_choices != 1:
            raise Unprocessable("A yes/no/abstain poll takes no options and one choice.",
                                code="invalid_options")
        return PollSpec(title, spec.kind, spec.rule, spec.secret, [], 1, spec.agenda_item_id,
                        spec.duration_secs)
    options = [o.strip() for o in spec.options]
    if len(options) < 2 or len(options) > settings.poll_max_options:
        raise Unprocessable(f"A choice poll needs 2-{settings.poll_max_options} options.",
                            code="invalid_options")
    if any(not o or len(o) > MAX_OPTION_CHARS for o in options):
        raise Unprocessable(f"Options must be 1-{MAX_OPTION_CHARS} characters.",
                            code="invalid_options")
    if len(set(options)) != len(options):
        raise Unprocessable("Options must differ from each other.", code="duplicate_options")
    if not 1 <= spec.max_choices <= len(options):
        raise Unprocessable("max_choices must be between 1 and the number of options.",
                            code="invalid_max_choices")
    return PollSpec(title, spec.kind, spec.rule, spec.secret, options, spec.max_choices,
                    spec.agenda_item_id, spec.duration_secs)


async def create_poll(ctx: Context, actor: Principal, meeting_id: int,
                      spec: PollSpec) -> dict[str, Any]:
    """A chair or secretary drafts a poll on the meeting (optionally on an agenda item)."""
    spec = check_spec(ctx, spec)
    async with ctx.write() as w:
        meeting = await require_visible(w.session, meeting_id, actor, lock=True)
        await require_role(w.session, meeting, actor, OFFICER_ROLES, "run polls")
        require_open(meeting)
        if spec.agenda_item_id is not None:
            item = await w.session.get(AgendaItem, spec.agenda_item_id)
            if item is None or item.meeting_id != meeting.id:
                raise Unprocessable(f"Agenda item {spec.agenda_item_id} is not on this "
                                    "meeting's agenda.", code="agenda_item_not_found")
        poll = Poll(meeting_id=meeting.id, agenda_item_id=spec.agenda_item_id, title=spec.title,
                    kind=spec.kind.value, options=spec.options, max_choices=spec.max_choices,
                    secret=spec.secret, rule=spec.rule.value, state=PollState.DRAFT.value,
                    duration_secs=spec.duration_secs, created_by=actor.id, created_at=w.now)
        w.session.add(poll)
        await w.session.flush()
        summary = poll_summary(poll, 0)
        await w.emit(meeting_topic(meeting.id), "poll.created", {"poll": summary})
        await w.audit(actor.id, "poll.create", f"poll:{poll.id}",
                      {k: summary[k] for k in ("meeting_id", "agenda_item_id", "title", "kind",
                                               "options", "max_choices", "secret", "rule",
                                               "duration_secs")})
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
        if poll.duration_secs is not None:
            poll.closes_at = w.now + timedelta(seconds=poll.duration_secs)
        summary = poll_summary(poll, 0)
        await w.emit(meeting_topic(meeting.id), "poll.opened", {"poll": summary})
        await w.audit(actor.id, "poll.open", f"poll:{poll.id}",
                      {"closes_at": summary["closes_at"]})
        w.after_commit(runtime(ctx).deadlines_changed.set)
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
        box = [(str(r), list(c)) for r, c in (await session.execute(
            select(Ballot.receipt, Ballot.choice).where(Ballot.poll_id == poll.id)
            .order_by(Ballot.receipt))).all()]
        voters = await _voter_ids(session, poll.id)
        if len(box) != len(voters):
            # Every ballot is written with its roll entry in one transaction; a mismatch
            # means the stored data was changed behind the server's back.
            raise RuntimeError(f"poll {poll.id}: {len(box)} ballots but {len(voters)} on the roll")
        members = await member_ids(session, meeting.id)
        present = await present_member_ids(session, meeting.id)
        result = decide(poll.poll_kind, poll.poll_rule, poll.options, poll.max_choices,
                        [c for _, c in box], members=len(members), present=len(present),
                        eligible=len(set(present) | set(voters))).as_dict()
        digest = ballots_digest(poll.id, box)
        if poll.secret:
            await _rewrite_secret_rows(session, poll.id)
            w.after_commit(runtime(ctx).scrub_wanted.set)
        poll.state = PollState.CLOSED.value
        poll.closed_at = w.now
        poll.closed_by = actor.id if actor else None
        poll.result = result
        poll.ballots_digest = digest
        await w.emit(meeting_topic(meeting.id), "poll.closed",
                     {"poll_id": poll.id, "state": poll.state,
                      "closed_at": utc_iso(w.now), "result": result})
        await w.audit(actor.id if actor else None, "poll.close", f"poll:{poll.id}",
                      {"result": result, "ballots_digest": digest,
                       "by": "chair" if actor else "deadline"})
        # The organisation seals the result sheet once this has committed.
        w.after_commit(functools.partial(result_closed, ctx, poll.id))
        summary = poll_summary(poll, len(box))
    return summary


async def _rewrite_secret_rows(session: AsyncSession, poll_id: int) -> None:
    """Write the roll and the box again, sorted, in the closing transaction.

    On PostgreSQL each row carries the id of the transaction that wrote it (``xmin``) and
    its physical place (``ctid``): a roll entry and its ballot, written together, would
    share both. Rewritten here, every row of the poll has the closing transaction's id and
    sits in sorted order. (SQLite's WITHOUT ROWID tables never had an insertion order.)
    """
    ballots = (await session.execute(
        select(Ballot.receipt, Ballot.choice).where(Ballot.poll_id == poll_id)
        .order_by(Ballot.receipt))).all()
    roll = (await session.execute(
        select(PollVoter.user_id, PollVoter.retry_check, PollVoter.voted_at)
        .where(PollVoter.poll_id == poll_id).order_by(PollVoter.user_id))).all()
    await session.execute(delete(Ballot).where(Ballot.poll_id == poll_id))
    await session.execute(delete(PollVoter).where(PollVoter.poll_id == poll_id))
    if ballots:
        await session.execute(insert(Ballot), [
            {"poll_id": poll_id, "receipt": r, "choice": c} for r, c in ballots])
    if roll:
        await session.execute(insert(PollVoter), [
            {"poll_id": poll_id, "user_id": uid, "retry_check": check, "choice": None,
             "receipt": None, "voted_at": at} for uid, check, at in roll])


# --- ballots ------------------------------------------------------------------------------
#
# Ballots are written in batches (group commit). A request puts its ballot in this node's
# bounded queue and waits; one writer task takes everything that queued up while the
# previous batch was written and writes it in one transaction: one lock of the poll, one
# read of the voters' seats, one insert of roll entries and ballots, one lock of the
# audit chain. Each ballot in a batch is judged on its own (a refusal refuses only that
# ballot); the answers go out after the commit. A batch that loses a race with another
# node (a unique key) is written again ballot by ballot.


@dataclass(frozen=True)
class CastOutcome:
    receipt: str
    # True when this was a retry of a ballot already counted (same key, same choice).
    replay: bool


@dataclass
class PendingBallot:
    actor: Principal
    poll_id: int
    raw_choice: str | list[str]
    idempotency_key: str
    future: asyncio.Future[CastOutcome] | None = None


class ShuttingDown(ApiError):
    status = 503
    code = "shutting_down"


async def cast_ballot(ctx: Context, actor: Principal, poll_id: int,
                      raw_choice: str | list[str], idempotency_key: str) -> CastOutcome:
    """A checked-in member votes once; the same key again gets the same receipt."""
    item = PendingBallot(actor, poll_id, raw_choice, idempotency_key)
    rt = runtime(ctx)
    if rt.ballots is None:
        # No writer task on this context (a script calling the service): write it alone.
        return await _settle_alone(ctx, item)
    item.future = asyncio.get_running_loop().create_future()
    try:
        rt.ballots.put_nowait(item)
    except asyncio.QueueFull:
        raise TooManyRequests("Too many ballots are waiting to be written; retry with the "
                              "same idempotency key.", code="ballots_queue_full",
                              details={"retry_after": 1}) from None
    return await item.future


async def run_ballot_box(ctx: Context) -> None:
    """This node's ballot writer: batches of queued ballots, one transaction each."""
    rt = runtime(ctx)
    queue: asyncio.Queue[PendingBallot] = asyncio.Queue(maxsize=ctx.settings.poll_ballot_queue)
    rt.ballots = queue
    batch: list[PendingBallot] = []
    try:
        while True:
            batch = [await queue.get()]
            while len(batch) < ctx.settings.poll_ballot_batch and not queue.empty():
                batch.append(queue.get_nowait())
            await _settle_batch(ctx, batch)
            batch = []
    finally:
        rt.ballots = None
        stopping = ShuttingDown("The server is restarting; retry with the same key.")
        while not queue.empty():
            batch.append(queue.get_nowait())
        for item in batch:
            _answer(item, stopping)


def _answer(item: PendingBallot, result: CastOutcome | BaseException) -> None:
    future = item.future
    if future is None or future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


async def _settle_batch(ctx: Context, batch: list[PendingBallot]) -> None:
    try:
        results = await _write_batch(ctx, batch)
    except DBAPIError:
        # A unique key taken by another node, or a deadlock: one by one, each retried.
        log.warning("a batch of %d ballots lost a race; writing them one by one", len(batch))
        for item in batch:
            try:
                _answer(item, await _settle_alone(ctx, item))
            except Exception as exc:
                _answer(item, exc)
        return
    except Exception as exc:
        # Not a refusal of one ballot but a failure of the write: every waiter gets it
        # (a 500), nothing of the batch was stored.
        log.exception("writing a batch of %d ballots failed", len(batch))
        for item in batch:
            _answer(item, exc)
        return
    for item, result in zip(batch, results, strict=True):
        _answer(item, result)


async def _settle_alone(ctx: Context, item: PendingBallot) -> CastOutcome:
    for attempt in range(1, CAST_ATTEMPTS + 1):
        try:
            [result] = await _write_batch(ctx, [item])
        except IntegrityError:
            # Another transaction stored this voter's ballot (or this receipt) between our
            # check and our insert; the next attempt sees it and answers from it.
            if attempt == CAST_ATTEMPTS:
                raise
            continue
        if isinstance(result, BaseException):
            raise result
        return result
    raise AssertionError("unreachable")


@dataclass
class _Seat:
    role: str
    present: bool


def _judge(poll: Poll, meeting: Meeting, now: datetime, item: PendingBallot,
           seat: _Seat | None, retry_check: str | None,
           receipt_taken: bool) -> tuple[list[str], str, str] | CastOutcome | ApiError:
    """One ballot against the poll: a refusal, a replay, or (choice, receipt, check) to store.

    ``retry_check`` is the stored check of this voter's ballot if they have voted.
    """
    try:
        choice = canonical_choice(poll.poll_kind, poll.options, poll.max_choices,
                                  item.raw_choice)
    except ChoiceError as exc:
        return Unprocessable(exc.message, code=exc.code)
    receipt = receipt_for(poll.id, item.idempotency_key)
    check = retry_check_for(poll.id, item.actor.id, item.idempotency_key, choice)
    if retry_check is not None:
        if hmac.compare_digest(retry_check, check):
            return CastOutcome(receipt, replay=True)
        return Conflict("You have already voted in this poll; a ballot is final.",
                        code="already_voted")
    if poll.lifecycle is PollState.DRAFT:
        return Conflict(f"Poll {poll.id} has not been opened.", code="poll_not_open")
    if poll.lifecycle is PollState.CLOSED or (
            poll.closes_at is not None and now >= poll.closes_at):
        return Conflict(f"Poll {poll.id} is closed.", code="poll_closed")
    if seat is None:
        return Forbidden(f"You do not take part in meeting {meeting.id}.",
                         code="not_a_participant")
    if seat.role not in {role.value for role in MEMBER_ROLES}:
        return Forbidden("Only the delegates of the meeting vote.", code="no_vote")
    try:
        require_in_session(meeting)
    except Conflict as exc:
        return exc
    if not seat.present:
        return Conflict("Check in to the meeting before voting.", code="not_checked_in")
    if receipt_taken:
        return Conflict("This idempotency key was used for another ballot; send a new random "
                        "key.", code="idempotency_key_reused")
    return choice, receipt, check


async def _write_batch(ctx: Context,
                       batch: Sequence[PendingBallot]) -> list[CastOutcome | ApiError]:
    results: list[CastOutcome | ApiError | None] = [None] * len(batch)
    by_poll: dict[int, list[int]] = {}
    for index, item in enumerate(batch):
        by_poll.setdefault(item.poll_id, []).append(index)
    async with ctx.write() as w:
        session = w.session
        votes: list[tuple[int, int, dict[str, Any]]] = []
        for poll_id, indices in sorted(by_poll.items()):
            poll = (await session.execute(
                select(Poll).where(Poll.id == poll_id).with_for_update(read=True)
            )).scalar_one_or_none()
            if poll is None:
                for index in indices:
                    results[index] = NotFound(f"Poll {poll_id} does not exist.",
                                              code="poll_not_found")
                continue
            meeting = await require_meeting(session, poll.meeting_id)
            users = sorted({batch[i].actor.id for i in indices})
            checks: dict[int, str] = dict((await session.execute(
                select(PollVoter.user_id, PollVoter.retry_check)
                .where(PollVoter.poll_id == poll.id, PollVoter.user_id.in_(users))
            )).tuples().all())
            seats = {uid: _Seat(role, bool(present)) for uid, role, present in (
                await session.execute(
                    select(Participant.user_id, Participant.role, Attendance.present)
                    .outerjoin(Attendance, (Attendance.meeting_id == Participant.meeting_id)
                               & (Attendance.user_id == Participant.user_id))
                    .where(Participant.meeting_id == poll.meeting_id,
                           Participant.user_id.in_(users)))).tuples().all()}
            wanted = sorted({receipt_for(poll.id, batch[i].idempotency_key) for i in indices})
            taken = set((await session.execute(
                select(Ballot.receipt).where(Ballot.poll_id == poll.id,
                                             Ballot.receipt.in_(wanted)))).scalars())
            named = not poll.secret
            roll: dict[int, dict[str, Any]] = {}
            box: dict[str, list[str]] = {}
            for index in indices:
                item = batch[index]
                uid = item.actor.id
                verdict = _judge(poll, meeting, w.now, item, seats.get(uid), checks.get(uid),
                                 receipt_for(poll.id, item.idempotency_key) in taken)
                if not isinstance(verdict, tuple):
                    results[index] = verdict
                    continue
                choice, receipt, check = verdict
                checks[uid] = check
                taken.add(receipt)
                roll[uid] = {"poll_id": poll.id, "user_id": uid, "retry_check": check,
                             "choice": choice if named else None,
                             "receipt": receipt if named else None, "voted_at": w.now}
                box[receipt] = choice
                results[index] = CastOutcome(receipt, replay=False)
                # The roll entry is of legal weight; the choice only where the vote is named.
                votes.append((uid, poll.id, {"choice": choice, "receipt": receipt}
                              if named else {}))
            if roll:
                # Sorted, so even within a batch the order of rows says nothing.
                await session.execute(insert(PollVoter), [roll[u] for u in sorted(roll)])
                await session.execute(insert(Ballot), [
                    {"poll_id": poll.id, "receipt": r, "choice": box[r]} for r in sorted(box)])
                w.after_commit(functools.partial(runtime(ctx).touch_progress, poll.id))
        votes.sort(key=lambda vote: (vote[1], vote[0]))
        await _audit_votes(w, votes)
    return [r for r in results if r is not None]


async def _audit_votes(w: Write, votes: Sequence[tuple[int, int, dict[str, Any]]]) -> None:
    """One ``poll.vote`` record per new roll entry, chained in one go.

    The first goes through the core's ``append_audit`` (which takes, or creates, and locks
    the chain head); the rest continue the chain from that head in one insert.
    """
    if not votes:
        return
    (first_uid, first_poll, first_details), rest = votes[0], votes[1:]
    await w.audit(first_uid, "poll.vote", f"poll:{first_poll}", first_details)
    if not rest:
        return
    # append_audit just locked and loaded the head: take it from the session, no query.
    head = await w.session.get(AuditHead, 1)
    assert head is not None
    seq, prev = head.seq, head.hash
    rows = []
    for uid, poll_id, details in rest:
        seq += 1
        details = json.loads(json.dumps(details, ensure_ascii=False))
        digest = record_hash(seq, w.now, uid, "poll.vote", f"poll:{poll_id}", details, prev)
        rows.append({"seq": seq, "at": w.now, "actor_id": uid, "action": "poll.vote",
                     "subject": f"poll:{poll_id}", "details": details, "prev_hash": prev,
                     "hash": digest})
        prev = digest
    await w.session.execute(insert(AuditRecord), rows)
    head.seq = seq
    head.hash = prev
    await w.session.flush()


# --- scrubbing after a secret poll -----------------------------------------------------

# The tables a secret poll's close rewrites; VACUUM removes the row versions left behind.
SECRET_TABLES = ("poll_ballots", "poll_voters")


async def scrub_secret_rows(ctx: Context) -> None:
    """PostgreSQL: VACUUM the roll and the box, so the row versions from before the close
    rewrite (with their telling ``xmin``) do not linger on disk until autovacuum.

    Best effort and outside any transaction (VACUUM cannot run in one). SQLite keeps no
    old row versions in the tables (see README, "Secret ballots", for its WAL file)."""
    if ctx.db.is_sqlite:
        return
    async with ctx.db.write_engine.connect() as conn:
        auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await auto.exec_driver_sql(f"VACUUM {', '.join(SECRET_TABLES)}")


async def run_scrubber(ctx: Context) -> None:
    """Scrub after each close of a secret poll (several closes at once: one scrub)."""
    rt = runtime(ctx)
    while True:
        await rt.scrub_wanted.wait()
        rt.scrub_wanted.clear()
        try:
            await scrub_secret_rows(ctx)
        except Exception:
            log.exception("vacuuming the ballot tables after a secret poll failed")


# --- logs ---------------------------------------------------------------------------------

# Database libraries that print every statement with its bound parameters (receipts,
# choices, retry checks) at these levels and below. A server run with DIENHONG_LOG_LEVEL=DEBUG
# must not write a secret ballot to its log, so they never go below these floors.
PARAMETER_LOGGERS = {"aiosqlite": logging.INFO, "sqlalchemy.engine": logging.WARNING,
                     "asyncpg": logging.INFO}


async def keep_ballots_out_of_logs(ctx: Context) -> None:
    """Start-up: raise the level of loggers that would print SQL parameters."""
    for name, floor in PARAMETER_LOGGERS.items():
        logger = logging.getLogger(name)
        # Explicit, so turning the root logger to DEBUG later does not lower it either.
        logger.setLevel(max(floor, logger.getEffectiveLevel()))


# --- background tasks ----------------------------------------------------------------------


async def publish_progress(ctx: Context, poll_id: int) -> None:
    """Emit ``poll.progress {cast}`` for an open poll (nothing once it is closed)."""
    async with ctx.write() as w:
        poll = await lock_poll(w.session, poll_id, exclusive=False)
        if poll.lifecycle is not PollState.OPEN:
            return
        cast = await _cast_count(w.session, poll.id)
        await w.emit(meeting_topic(poll.meeting_id), "poll.progress",
                     {"poll_id": poll.id, "cast": cast})


async def run_progress(ctx: Context) -> None:
    """Coalesce ballots into at most one ``poll.progress`` per poll per interval."""
    rt = runtime(ctx)
    while True:
        await rt.progress_wanted.wait()
        rt.progress_wanted.clear()
        pending, rt.progress_pending = rt.progress_pending, set()
        for poll_id in sorted(pending):
            try:
                await publish_progress(ctx, poll_id)
            except Exception:
                log.exception("publishing the progress of poll %d failed", poll_id)
        # A throttle on this node's own output, not a deadline of the domain: loop time.
        await asyncio.sleep(ctx.settings.coalesce_interval_secs)


async def _next_deadline(ctx: Context) -> datetime | None:
    async with ctx.read() as session:
        stmt = select(func.min(Poll.closes_at)).where(Poll.state == PollState.OPEN.value,
                                                      Poll.closes_at.is_not(None))
        value = (await session.execute(stmt)).scalar_one_or_none()
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


async def close_due_polls(ctx: Context) -> int:
    """Close every open poll whose deadline has passed; returns how many it closed."""
    now = ctx.clock.now()
    async with ctx.read() as session:
        due = (await session.execute(
            select(Poll.id).where(Poll.state == PollState.OPEN.value,
                                  Poll.closes_at.is_not(None), Poll.closes_at <= now)
            .order_by(Poll.closes_at, Poll.id))).scalars().all()
    closed = 0
    for poll_id in due:
        if await close_poll(ctx, None, int(poll_id)) is not None:
            closed += 1
    return closed


async def _wait_first(*aws: Any) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def run_closer(ctx: Context) -> None:
    """Close polls at their deadline. Deadlines live in the database, so a restart (or
    another node) picks them up; opening a poll on this node wakes it at once."""
    rt = runtime(ctx)
    recheck = timedelta(seconds=ctx.settings.poll_closer_recheck_secs)
    while True:
        try:
            rt.deadlines_changed.clear()
            due = await _next_deadline(ctx)
            now = ctx.clock.now()
            if due is not None and due <= now:
                await close_due_polls(ctx)
                continue
            wake_at = now + recheck if due is None else min(due, now + recheck)
            await _wait_first(rt.deadlines_changed.wait(), ctx.clock.sleep_until(wake_at))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("closing polls at their deadline failed; retrying")
            await asyncio.sleep(1)

