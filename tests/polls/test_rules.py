"""Tallies and pass/fail under each rule: ties, abstentions, members absent."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meeting.polls.rules import (
    ChoiceError,
    Numbers,
    PollKind,
    Rule,
    canonical_choice,
    decide,
    meets,
    threshold,
)

YNA = PollKind.YES_NO_ABSTAIN


def ballots(yes: int = 0, no: int = 0, abstain: int = 0) -> list[list[str]]:
    return [["yes"]] * yes + [["no"]] * no + [["abstain"]] * abstain


def yna(rule: Rule, members: int, present: int, **votes: int):  # type: ignore[no-untyped-def]
    cast = ballots(**votes)
    return decide(YNA, rule, [], 1, cast, members=members, present=present, eligible=present)


def test_majority_of_members_counts_absent_members_against() -> None:
    # 95 members, only 60 present: 47 yes out of 60 is not more than half of 95.
    result = yna(Rule.MAJORITY_OF_MEMBERS, 95, 60, yes=47, no=10, abstain=3)
    assert result.tally == {"yes": 47, "no": 10, "abstain": 3}
    assert result.threshold == 48
    assert not result.passed
    assert yna(Rule.MAJORITY_OF_MEMBERS, 95, 60, yes=48, no=12).passed
    assert result.numbers == Numbers(members=95, present=60, eligible=60, cast=60)


def test_majority_of_members_exact_half_is_a_tie_and_fails() -> None:
    assert not yna(Rule.MAJORITY_OF_MEMBERS, 10, 10, yes=5, no=5).passed
    assert not yna(Rule.MAJORITY_OF_MEMBERS, 10, 10, yes=5, abstain=5).passed
    assert yna(Rule.MAJORITY_OF_MEMBERS, 10, 10, yes=6, no=4).passed


def test_two_thirds_of_members() -> None:
    # Two thirds of 95 is 63.33…: 64 needed; of 90 exactly 60 suffices ("at least").
    assert threshold(Rule.TWO_THIRDS_OF_MEMBERS, Numbers(95, 95, 95, 95)) == 64
    assert not yna(Rule.TWO_THIRDS_OF_MEMBERS, 95, 95, yes=63, no=32).passed
    assert yna(Rule.TWO_THIRDS_OF_MEMBERS, 95, 95, yes=64, no=31).passed
    assert yna(Rule.TWO_THIRDS_OF_MEMBERS, 90, 70, yes=60, abstain=10).passed
    assert not yna(Rule.TWO_THIRDS_OF_MEMBERS, 90, 70, yes=59, abstain=11).passed


def test_majority_of_cast_abstentions_count_as_cast() -> None:
    # 30 yes, 20 no, 15 abstain: 30 of 65 cast is not more than half.
    assert not yna(Rule.MAJORITY_OF_CAST, 95, 70, yes=30, no=20, abstain=15).passed
    assert yna(Rule.MAJORITY_OF_CAST, 95, 70, yes=30, no=20, abstain=9).passed
    # A tie of the cast ballots fails.
    assert not yna(Rule.MAJORITY_OF_CAST, 95, 70, yes=20, no=20).passed
    # Absent members do not matter under this rule: 3 of 5 cast passes with 95 members.
    assert yna(Rule.MAJORITY_OF_CAST, 95, 5, yes=3, no=2).passed


def test_nothing_passes_without_ballots_or_members() -> None:
    assert not yna(Rule.MAJORITY_OF_CAST, 95, 0).passed
    assert not yna(Rule.MAJORITY_OF_MEMBERS, 0, 0).passed
    assert not meets(Rule.MAJORITY_OF_MEMBERS, 0, Numbers(0, 0, 0, 0))


def test_choice_poll_elects_within_max_choices() -> None:
    options = ["An", "Bình", "Cường", "Dũng"]
    cast = [["An", "Bình"]] * 6 + [["An", "Cường"]] * 3 + [["Dũng"]] * 1
    result = decide(
        PollKind.CHOICE,
        Rule.MAJORITY_OF_CAST,
        options,
        2,
        cast,
        members=12,
        present=10,
        eligible=10,
    )
    assert result.tally == {"An": 9, "Bình": 6, "Cường": 3, "Dũng": 1}
    assert result.elected == ["An", "Bình"]
    assert result.passed
    # Under majority of members (12): 6 is not more than half of 12.
    result = decide(
        PollKind.CHOICE,
        Rule.MAJORITY_OF_MEMBERS,
        options,
        2,
        cast,
        members=12,
        present=10,
        eligible=10,
    )
    assert result.elected == ["An"]


def test_choice_poll_tie_for_the_last_seat_is_undecided() -> None:
    options = ["An", "Bình", "Cường"]
    cast = [["An", "Bình"]] * 5 + [["An", "Cường"]] * 5
    result = decide(
        PollKind.CHOICE,
        Rule.MAJORITY_OF_CAST,
        options,
        2,
        cast,
        members=10,
        present=10,
        eligible=10,
    )
    assert result.elected == ["An"]
    assert result.undecided == []  # 5 of 10 is not more than half: nobody else reaches it
    cast = [["An", "Bình"]] * 6 + [["An", "Cường"]] * 6
    result = decide(
        PollKind.CHOICE,
        Rule.MAJORITY_OF_CAST,
        options,
        1,
        cast,
        members=12,
        present=12,
        eligible=12,
    )
    assert result.elected == ["An"]
    result = decide(
        PollKind.CHOICE,
        Rule.MAJORITY_OF_CAST,
        ["An", "Bình"],
        1,
        [["An"]] * 4 + [["Bình"]] * 4 + [["An", "Bình"]] * 0,
        members=8,
        present=8,
        eligible=8,
    )
    assert result.elected == [] and not result.passed
    cast = [["An", "Bình"]] * 7 + [["Cường"]] * 1
    result = decide(
        PollKind.CHOICE, Rule.MAJORITY_OF_CAST, options, 1, cast, members=8, present=8, eligible=8
    )
    assert result.elected == [] and result.undecided == ["An", "Bình"]
    assert not result.passed


def test_blank_ballots_count_as_cast() -> None:
    result = decide(
        PollKind.CHOICE,
        Rule.MAJORITY_OF_CAST,
        ["An", "Bình"],
        1,
        [["An"]] * 3 + [[]] * 3,
        members=6,
        present=6,
        eligible=6,
    )
    assert result.numbers.cast == 6
    assert result.tally == {"An": 3, "Bình": 0}
    assert not result.passed


@pytest.mark.parametrize(
    ("kind", "options", "max_choices", "raw", "code"),
    [
        (YNA, [], 1, "maybe", "unknown_option"),
        (YNA, [], 1, ["yes"], "invalid_choice"),
        (PollKind.CHOICE, ["An", "Bình"], 1, ["An", "Bình"], "too_many_choices"),
        (PollKind.CHOICE, ["An", "Bình"], 2, ["An", "An"], "duplicate_choice"),
        (PollKind.CHOICE, ["An", "Bình"], 2, ["Chí"], "unknown_option"),
    ],
)
def test_bad_choices_are_refused(
    kind: PollKind, options: list[str], max_choices: int, raw: object, code: str
) -> None:
    with pytest.raises(ChoiceError) as caught:
        canonical_choice(kind, options, max_choices, raw)  # type: ignore[arg-type]
    assert caught.value.code == code


def test_choice_is_put_in_the_options_order() -> None:
    assert canonical_choice(PollKind.CHOICE, ["An", "Bình", "Cường"], 3, ["Cường", "An"]) == [
        "An",
        "Cường",
    ]
    assert canonical_choice(PollKind.CHOICE, ["An", "Bình"], 1, "Bình") == ["Bình"]
    assert canonical_choice(YNA, [], 1, "abstain") == ["abstain"]


@given(st.integers(1, 600), st.integers(0, 600), st.integers(0, 600), st.integers(0, 600))
def test_rules_agree_with_fractions(members: int, yes: int, no: int, abstain: int) -> None:
    from fractions import Fraction

    cast = yes + no + abstain
    numbers = Numbers(members, cast, cast, cast)
    assert meets(Rule.MAJORITY_OF_MEMBERS, yes, numbers) == (Fraction(yes, members) > 0.5)
    assert meets(Rule.TWO_THIRDS_OF_MEMBERS, yes, numbers) == (
        yes > 0 and Fraction(yes, members) >= Fraction(2, 3)
    )
    assert meets(Rule.MAJORITY_OF_CAST, yes, numbers) == (
        cast > 0 and Fraction(yes, cast) > Fraction(1, 2)
    )
