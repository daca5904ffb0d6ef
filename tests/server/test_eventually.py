"""The harness's ``eventually``: it returns what the condition answered once true, fails
naming what it waited for, and lets unexpected errors through."""

from __future__ import annotations

import asyncio

import pytest

from tests.harness import eventually


async def test_returns_the_first_true_answer_of_a_plain_function() -> None:
    answers = iter([None, [], 0, ["done"]])
    assert await eventually(lambda: next(answers), "a list", interval=0) == ["done"]


async def test_awaits_an_async_condition_while_other_tasks_run() -> None:
    box: list[int] = []

    async def fill() -> None:
        for n in range(3):
            await asyncio.sleep(0)
            box.append(n)

    task = asyncio.create_task(fill())

    async def full() -> bool:
        return len(box) == 3

    assert await eventually(full, "the box to fill", interval=0) is True
    await task


async def test_fails_naming_what_was_awaited_and_the_last_answer() -> None:
    with pytest.raises(AssertionError) as caught:
        await eventually(lambda: 0, "the answer to become non-zero", timeout=0.05, interval=0.01)
    assert str(caught.value) == (
        "still waiting for the answer to become non-zero after 0.05 s (last answer: 0)"
    )


async def test_ignored_errors_count_as_not_yet_and_others_go_through() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("not listening yet")
        return "up"

    assert await eventually(flaky, "the service", interval=0, ignoring=(ConnectionError,)) == "up"

    def broken() -> bool:
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        await eventually(broken, "anything", ignoring=(ConnectionError,))

    def down() -> bool:
        raise ConnectionError("down")

    with pytest.raises(AssertionError, match=r"last answer: ConnectionError\('down'\)"):
        await eventually(
            down, "the service", timeout=0.02, interval=0.01, ignoring=(ConnectionError,)
        )
