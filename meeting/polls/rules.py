"""Rules of majority and the tally: pure functions, no database, no clock.

A poll's rule is data on the poll (never hard-coded): the threshold a choice must reach,
counted against all delegates of the meeting (``members``) or against the ballots cast.
Abstentions and blank ballots count as cast, so under ``majority_of_cast`` they weigh like
"no"; members who are absent or do not vote weigh like "no" under the member rules.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


class PollKind(enum.StrEnum):
    YES_NO_ABSTAIN = "yes_no_abstain"
    # Pick up to max_choices of the options (e.g. electing members to a committee).
    CHOICE = "choice"


class Rule(enum.StrEnum):
    # More than half of all delegates of the meeting (the default for a resolution).
    MAJORITY_OF_MEMBERS = "majority_of_members"
    # At least two thirds of all delegates (constitutional and personnel matters).
    TWO_THIRDS_OF_MEMBERS = "two_thirds_of_members"
    # More than half of the ballots cast (abstentions and blank ballots are cast).
    MAJORITY_OF_CAST = "majority_of_cast"


YES = "yes"
NO = "no"
ABSTAIN = "abstain"
YES_NO_ABSTAIN_OPTIONS = (YES, NO, ABSTAIN)


class ChoiceError(ValueError):
    """A ballot's choice breaks the poll's shape; ``code`` is the API error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Numbers:
    """The figures behind a result, fixed at close."""

    # Delegates of the meeting (guests, chairs and secretaries without a vote excluded).
    members: int
    # Delegates checked in when the poll closed.
    present: int
    # Delegates who could vote: present at close, or voted before leaving.
    eligible: int
    # Ballots counted (blank ballots and abstentions included).
    cast: int

    def as_dict(self) -> dict[str, int]:
        return {
            "members": self.members,
            "present": self.present,
            "eligible": self.eligible,
            "cast": self.cast,
        }


@dataclass(frozen=True)
class Result:
    rule: Rule
    tally: dict[str, int]
    passed: bool
    numbers: Numbers
    # The votes a choice needed under the rule.
    threshold: int
    # CHOICE polls: options elected (reached the threshold and within max_choices).
    elected: list[str] = field(default_factory=list)
    # CHOICE polls: options that reached the threshold but tie at the max_choices boundary.
    undecided: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "rule": self.rule.value,
            "tally": dict(self.tally),
            "passed": self.passed,
            "numbers": self.numbers.as_dict(),
            "threshold": self.threshold,
        }
        if self.elected or self.undecided:
            body["elected"] = list(self.elected)
            body["undecided"] = list(self.undecided)
        return body


def threshold(rule: Rule, numbers: Numbers) -> int:
    """The fewest votes that satisfy ``rule`` (integer arithmetic, no rounding errors)."""
    if rule is Rule.MAJORITY_OF_MEMBERS:
        return numbers.members // 2 + 1
    if rule is Rule.TWO_THIRDS_OF_MEMBERS:
        # At least two thirds: ceil(2 * members / 3).
        return -(-2 * numbers.members // 3)
    return numbers.cast // 2 + 1


def meets(rule: Rule, votes: int, numbers: Numbers) -> bool:
    """Do ``votes`` satisfy ``rule``? Nothing passes with zero votes or zero members."""
    base = numbers.cast if rule is Rule.MAJORITY_OF_CAST else numbers.members
    if votes <= 0 or base <= 0:
        return False
    return votes >= threshold(rule, numbers)


def options_for(kind: PollKind, options: Sequence[str]) -> list[str]:
    return list(YES_NO_ABSTAIN_OPTIONS) if kind is PollKind.YES_NO_ABSTAIN else list(options)


def canonical_choice(
    kind: PollKind, options: Sequence[str], max_choices: int, raw: str | Sequence[str]
) -> list[str]:
    """Check a ballot's choice against the poll and return it in the options' order.

    ``yes_no_abstain`` takes one of yes/no/abstain. ``choice`` takes a list of distinct
    options (at most ``max_choices``; an empty list is a blank ballot) or one option.
    """
    allowed = options_for(kind, options)
    if kind is PollKind.YES_NO_ABSTAIN:
        if not isinstance(raw, str):
            raise ChoiceError("invalid_choice", "Vote with one of 'yes', 'no', 'abstain'.")
        picked = [raw]
    else:
        picked = [raw] if isinstance(raw, str) else list(raw)
    for item in picked:
        if item not in allowed:
            raise ChoiceError("unknown_option", f"{item!r} is not an option of this poll.")
    if len(set(picked)) != len(picked):
        raise ChoiceError("duplicate_choice", "An option is chosen more than once.")
    if kind is PollKind.CHOICE and len(picked) > max_choices:
        raise ChoiceError("too_many_choices", f"At most {max_choices} options may be chosen.")
    return sorted(picked, key=allowed.index)


def tally(
    kind: PollKind, options: Sequence[str], ballots: Iterable[Sequence[str]]
) -> dict[str, int]:
    """Votes per option, every option present (zero included), in the options' order."""
    counts = dict.fromkeys(options_for(kind, options), 0)
    for choice in ballots:
        for item in choice:
            counts[item] += 1
    return counts


def decide(
    kind: PollKind,
    rule: Rule,
    options: Sequence[str],
    max_choices: int,
    ballots: Sequence[Sequence[str]],
    *,
    members: int,
    present: int,
    eligible: int,
) -> Result:
    """The result of a poll from its counted ballots and the meeting's figures."""
    counts = tally(kind, options, ballots)
    numbers = Numbers(members=members, present=present, eligible=eligible, cast=len(ballots))
    needed = threshold(rule, numbers)
    if kind is PollKind.YES_NO_ABSTAIN:
        return Result(rule, counts, meets(rule, counts[YES], numbers), numbers, needed)
    reaching = [o for o in counts if meets(rule, counts[o], numbers)]
    # Most votes first; the options' order only breaks the sort, never a tie for a seat.
    reaching.sort(key=lambda o: -counts[o])
    elected: list[str] = []
    undecided: list[str] = []
    if len(reaching) <= max_choices:
        elected = reaching
    else:
        boundary = counts[reaching[max_choices - 1]]
        above = [o for o in reaching if counts[o] > boundary]
        at = [o for o in reaching if counts[o] == boundary]
        seats_left = max_choices - len(above)
        elected = above
        if len(at) <= seats_left:
            elected = above + at
        else:
            # More options tie for the last seats than there are seats: a new round decides.
            undecided = at
    return Result(rule, counts, bool(elected), numbers, needed, elected, undecided)
