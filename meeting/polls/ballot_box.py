"""The ballot box: ballots are group-committed (``server.group_commit``).

A request is judged alone first (an id no poll can have, text no database stores, a key
of the wrong shape: 4xx, never queued). The batch then locks each of its polls shared
(``FOR SHARE`` on PostgreSQL; SQLite has one writer anyway) and reads the seats, the roll
entries and the receipts of the batch's voters once. Each ballot is then only judged
(a refusal fails that ballot alone and writes nothing), and the batch's roll entries and
ballots are written at its end in one insert each per poll, sorted by voter and by
receipt (or slot): neither the order of the rows nor their positions in the tables says
which ballot is whose. A fault in those inserts (another node stored the same voter
meanwhile) fails the batch, which is then written ballot by ballot. The close takes the
poll row exclusively, so a ballot either commits before the close counts the box or sees
the poll closed and is refused with ``poll_closed``.

Nothing here logs, audits or emits a choice of a secret poll, or anything that ties a
voter to a ballot.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from meeting.models import MEMBER_ROLES, Attendance, Meeting, Participant
from meeting.polls.models import Ballot, Poll, PollState, PollVoter, SealedBallot
from meeting.polls.receipts import receipt_for, retry_check_for
from meeting.polls.rules import ChoiceError, canonical_choice
from meeting.polls.runtime import poll_runtime
from meeting.polls.sealing import seal_bound
from meeting.service import require_in_session, require_meeting
from server.audit import AuditEntry
from server.auth.principal import Principal
from server.context import Context, Write
from server.errors import Conflict, Forbidden, NotFound, Unprocessable
from server.group_commit import Applied, GroupCommit, is_stored_id, require_encodable


@dataclass(frozen=True)
class CastOutcome:
    receipt: str
    # True when this was a retry of a ballot already counted (same key, same choice).
    replay: bool


@dataclass(frozen=True)
class BallotRequest:
    actor: Principal
    poll_id: int
    raw_choice: str | list[str]
    idempotency_key: str


@dataclass
class _PollBatch:
    """What the batch's ballots on one poll share, read once."""

    poll: Poll
    meeting: Meeting
    # The batch's voters' roles in the meeting now, and whether they are checked in.
    roles: dict[int, str]
    present: dict[int, bool]
    # The stored retry check of each of the batch's voters who has voted.
    checks: dict[int, str]
    # Receipts already in the box (of the batch's keys).
    taken: set[str] = field(default_factory=set)
    # Judged ballots waiting for ``finish``: roll entries by voter, the box's rows by
    # receipt (named polls) or by slot (sealed, secret polls).
    roll: dict[int, dict[str, object]] = field(default_factory=dict)
    box: dict[str, dict[str, object]] = field(default_factory=dict)


class BallotBox(GroupCommit[BallotRequest, dict[int, _PollBatch], CastOutcome]):
    what = "ballots"

    def __init__(self, ctx: Context) -> None:
        super().__init__(
            ctx,
            batch_size=ctx.settings.poll_ballot_batch,
            queue_limit=ctx.settings.poll_ballot_queue,
        )

    def judge(self, item: BallotRequest) -> None:
        if not is_stored_id(item.poll_id):
            raise NotFound(f"Poll {item.poll_id} does not exist.", code="poll_not_found")
        require_encodable(item.idempotency_key, "idempotency_key")
        for text in [item.raw_choice] if isinstance(item.raw_choice, str) else item.raw_choice:
            require_encodable(text, "choice")

    def should_retry(self, error: BaseException) -> bool:
        # Another transaction (another node, another tablet of the voter) stored this
        # voter's ballot or this receipt between our read and our insert: the next try
        # sees it and answers from it.
        return isinstance(error, IntegrityError)

    async def prepare(self, w: Write, items: Sequence[BallotRequest]) -> dict[int, _PollBatch]:
        session = w.session
        prepared: dict[int, _PollBatch] = {}
        for poll_id in sorted({item.poll_id for item in items}):
            poll = (
                await session.execute(
                    select(Poll).where(Poll.id == poll_id).with_for_update(read=True)
                )
            ).scalar_one_or_none()
            if poll is None:
                continue
            meeting = await require_meeting(session, poll.meeting_id)
            mine = [item for item in items if item.poll_id == poll_id]
            users = sorted({item.actor.id for item in mine})
            checks = dict(
                (
                    await session.execute(
                        select(PollVoter.user_id, PollVoter.retry_check).where(
                            PollVoter.poll_id == poll.id, PollVoter.user_id.in_(users)
                        )
                    )
                )
                .tuples()
                .all()
            )
            roles = dict(
                (
                    await session.execute(
                        select(Participant.user_id, Participant.role).where(
                            Participant.meeting_id == poll.meeting_id,
                            Participant.user_id.in_(users),
                        )
                    )
                )
                .tuples()
                .all()
            )
            present = {
                uid: bool(here)
                for uid, here in (
                    await session.execute(
                        select(Attendance.user_id, Attendance.present).where(
                            Attendance.meeting_id == poll.meeting_id, Attendance.user_id.in_(users)
                        )
                    )
                )
                .tuples()
                .all()
            }
            wanted = sorted({receipt_for(poll.id, item.idempotency_key) for item in mine})
            # Plain ballots: a named poll's (and a secret poll's opened before ballots
            # were sealed); sealed ones are found by their slot.
            taken = set(
                (
                    await session.execute(
                        select(Ballot.receipt).where(
                            Ballot.poll_id == poll.id, Ballot.receipt.in_(wanted)
                        )
                    )
                ).scalars()
            )
            if poll.secret:
                seal = poll_runtime(self.ctx).seal
                slots = {seal.slot(poll.id, receipt): receipt for receipt in wanted}
                taken |= {
                    slots[slot]
                    for slot in (
                        await session.execute(
                            select(SealedBallot.slot).where(
                                SealedBallot.poll_id == poll.id,
                                SealedBallot.slot.in_(sorted(slots)),
                            )
                        )
                    ).scalars()
                }
            prepared[poll_id] = _PollBatch(poll, meeting, roles, present, checks, taken)
        return prepared

    async def apply(
        self, w: Write, item: BallotRequest, prepared: dict[int, _PollBatch]
    ) -> Applied[CastOutcome]:
        shared = prepared.get(item.poll_id)
        if shared is None:
            raise NotFound(f"Poll {item.poll_id} does not exist.", code="poll_not_found")
        poll, uid = shared.poll, item.actor.id
        receipt = receipt_for(poll.id, item.idempotency_key)
        verdict = _judge(shared, w.now, item, receipt)
        if isinstance(verdict, CastOutcome):
            return Applied(verdict)
        choice, check = verdict
        named = not poll.secret
        shared.roll[uid] = {
            "poll_id": poll.id,
            "user_id": uid,
            "retry_check": check,
            "choice": choice if named else None,
            "receipt": receipt if named else None,
            "voted_at": w.now,
        }
        if named:
            shared.box[receipt] = {"poll_id": poll.id, "receipt": receipt, "choice": choice}
        else:
            # Sealed until the close: the log of this commit must not show the ballot.
            seal = poll_runtime(self.ctx).seal
            slot = seal.slot(poll.id, receipt)
            shared.box[slot] = {
                "poll_id": poll.id,
                "slot": slot,
                "sealed": seal.seal(
                    poll.id, seal_bound(poll.poll_kind, poll.options), receipt, choice
                ),
            }
        # Judged: later ballots of the batch see this one.
        shared.checks[uid] = check
        shared.taken.add(receipt)
        # The roll entry is of legal weight; the choice only where the vote is named.
        details = {"choice": choice, "receipt": receipt} if named else {}
        return Applied(
            CastOutcome(receipt, replay=False),
            audit=[AuditEntry(uid, "poll.vote", f"poll:{poll.id}", details)],
        )

    def isolate(self, item: BallotRequest) -> bool:
        # ``apply`` only judges; the rows are written by ``finish``.
        return False

    async def finish(self, w: Write, prepared: dict[int, _PollBatch]) -> None:
        """The batch's roll entries and ballots, one insert each per poll, sorted."""
        for poll_id, shared in sorted(prepared.items()):
            if not shared.roll:
                continue
            await w.session.execute(
                insert(PollVoter), [shared.roll[uid] for uid in sorted(shared.roll)]
            )
            table = SealedBallot if shared.poll.secret else Ballot
            await w.session.execute(insert(table), [shared.box[key] for key in sorted(shared.box)])
            w.after_commit(functools.partial(poll_runtime(self.ctx).touch_progress, poll_id))


def _judge(
    shared: _PollBatch, now: datetime, item: BallotRequest, receipt: str
) -> tuple[list[str], str] | CastOutcome:
    """One ballot against its poll: raises the refusal, returns a replay's outcome, or
    (choice, retry check) to store."""
    poll, meeting = shared.poll, shared.meeting
    try:
        choice = canonical_choice(poll.poll_kind, poll.options, poll.max_choices, item.raw_choice)
    except ChoiceError as exc:
        raise Unprocessable(exc.message, code=exc.code) from None
    check = retry_check_for(poll.id, item.actor.id, item.idempotency_key, choice)
    stored = shared.checks.get(item.actor.id)
    if stored is not None:
        if hmac.compare_digest(stored, check):
            return CastOutcome(receipt, replay=True)
        raise Conflict(
            "You have already voted in this poll; a ballot is final.", code="already_voted"
        )
    if poll.lifecycle is PollState.DRAFT:
        raise Conflict(f"Poll {poll.id} has not been opened.", code="poll_not_open")
    if poll.lifecycle is PollState.CLOSED or (poll.closes_at is not None and now >= poll.closes_at):
        raise Conflict(f"Poll {poll.id} is closed.", code="poll_closed")
    uid = item.actor.id
    # Who may vote was fixed when the poll opened (``meeting.polls.electorate``).
    electors = poll.electorate
    if electors is None or uid not in electors:
        role = shared.roles.get(uid)
        if role is None:
            raise Forbidden(
                f"You do not take part in meeting {meeting.id}.", code="not_a_participant"
            )
        if role not in {member.value for member in MEMBER_ROLES}:
            raise Forbidden("Only the delegates of the meeting vote.", code="no_vote")
        if electors is not None:
            raise Forbidden(
                "You became a member after this poll opened; who may vote was fixed then.",
                code="not_in_electorate",
            )
    require_in_session(meeting)
    if not shared.present.get(uid, False):
        raise Conflict("Check in to the meeting before voting.", code="not_checked_in")
    if receipt in shared.taken:
        raise Conflict(
            "This idempotency key was used for another ballot; send a new random key.",
            code="idempotency_key_reused",
        )
    return choice, check


async def cast_ballot(
    ctx: Context, actor: Principal, poll_id: int, raw_choice: str | list[str], idempotency_key: str
) -> CastOutcome:
    """A checked-in member votes once; the same key again gets the same receipt."""
    return await poll_runtime(ctx).box.submit(
        BallotRequest(actor, poll_id, raw_choice, idempotency_key)
    )


async def run_ballot_box(ctx: Context) -> None:
    """``Feature.background`` entry: this node's ballot writer."""
    await poll_runtime(ctx).box.run()
