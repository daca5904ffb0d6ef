"""Polls, the roll of who has voted, and the ballot box.

Who voted (``PollVoter``, the roll) and what was voted (``Ballot``, the box) are two
tables with no column in common but the poll. For a secret poll nothing ties a roll entry
to a ballot: ballots have no id of their own but their receipt (a hash of a secret only
the voter's tablet knows), no timestamp and no insertion order (``WITHOUT ROWID`` on
SQLite; rewritten in receipt order at close on PostgreSQL, so ``xmin``/``ctid`` say
nothing). See README, "Secret ballots".
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from meeting.polls.rules import PollKind, Rule
from server.db import Base, UTCDateTime

MAX_POLL_TITLE_CHARS = 300
MAX_OPTION_CHARS = 200
# Hex digits of a receipt (128 bits).
RECEIPT_CHARS = 32


class PollState(enum.StrEnum):
    """draft → open → closed; a closed poll never changes again."""

    DRAFT = "draft"
    OPEN = "open"
    CLOSED = "closed"

    def may_become(self, target: PollState) -> bool:
        return target in _POLL_TRANSITIONS[self]


_POLL_TRANSITIONS: dict[PollState, frozenset[PollState]] = {
    PollState.DRAFT: frozenset({PollState.OPEN}),
    PollState.OPEN: frozenset({PollState.CLOSED}),
    PollState.CLOSED: frozenset(),
}


class Poll(Base):
    __tablename__ = "polls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    meeting_id: Mapped[int] = mapped_column(
        ForeignKey("meetings.id", ondelete="CASCADE"), index=True
    )
    agenda_item_id: Mapped[int | None] = mapped_column(
        ForeignKey("agenda_items.id", ondelete="SET NULL"), default=None
    )
    title: Mapped[str] = mapped_column(String(MAX_POLL_TITLE_CHARS))
    kind: Mapped[str] = mapped_column(String(32))
    # The options of a CHOICE poll, in order; empty for yes/no/abstain.
    options: Mapped[list[str]] = mapped_column(JSON, default=list)
    max_choices: Mapped[int] = mapped_column(Integer, default=1)
    secret: Mapped[bool] = mapped_column(Boolean, default=False)
    rule: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default=PollState.DRAFT.value, index=True)
    # Closes itself this long after opening (None: only the chair closes it).
    duration_secs: Mapped[int | None] = mapped_column(Integer, default=None)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # When the poll closes itself; the closer task wakes for the earliest of these.
    closes_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None, index=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    closed_by: Mapped[int | None] = mapped_column(Integer, default=None)
    # Fixed at close: rule, tally, passed, numbers, threshold (elected for CHOICE polls).
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), default=None)
    # sha256 over the published ballot list, also written to the audit chain at close.
    ballots_digest: Mapped[str | None] = mapped_column(String(64), default=None)
    # The members entitled to vote (user ids, sorted), fixed when the poll opens: changing
    # the participants while it is open changes neither the base nor who may vote. None
    # for a draft (and for polls opened before it was recorded: the current members).
    electorate: Mapped[list[int] | None] = mapped_column(JSON(none_as_null=True), default=None)

    @property
    def lifecycle(self) -> PollState:
        return PollState(self.state)

    @property
    def poll_kind(self) -> PollKind:
        return PollKind(self.kind)

    @property
    def poll_rule(self) -> Rule:
        return Rule(self.rule)


class PollVoter(Base):
    """The roll: this member has voted in this poll (public; never what they voted)."""

    __tablename__ = "poll_voters"
    __table_args__ = ({"sqlite_with_rowid": False},)

    poll_id: Mapped[int] = mapped_column(
        ForeignKey("polls.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), primary_key=True, autoincrement=False
    )
    # sha256(poll, user, idempotency key, choice): recognises a retry of the same ballot
    # without storing the key, the receipt or (for a secret poll) the choice.
    retry_check: Mapped[str] = mapped_column(String(64))
    # Open (named) polls only; always NULL for a secret poll.
    choice: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True), default=None)
    receipt: Mapped[str | None] = mapped_column(String(RECEIPT_CHARS), default=None)
    voted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class Ballot(Base):
    """One counted ballot: its receipt and its choice, nothing else."""

    __tablename__ = "poll_ballots"
    __table_args__ = ({"sqlite_with_rowid": False},)

    poll_id: Mapped[int] = mapped_column(
        ForeignKey("polls.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    # sha256(poll, idempotency key), truncated: the voter's tablet can recompute it.
    receipt: Mapped[str] = mapped_column(String(RECEIPT_CHARS), primary_key=True)
    choice: Mapped[list[str]] = mapped_column(JSON)


class SealedBallot(Base):
    """A ballot of an open secret poll, sealed until the close (``meeting.polls.sealing``):
    a keyed hash of its receipt and the encrypted receipt and choice. Unsealed into
    ``Ballot`` rows by the close, which deletes these."""

    __tablename__ = "poll_sealed_ballots"
    __table_args__ = ({"sqlite_with_rowid": False},)

    poll_id: Mapped[int] = mapped_column(
        ForeignKey("polls.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    slot: Mapped[str] = mapped_column(String(64), primary_key=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
