"""Cancelling what waits for the media worker: shutdown must never hang on it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from meeting.media.engine import MediaEngine
from meeting.media.service import _repeat, engine_config
from server.settings import Settings


async def test_a_call_cancelled_as_its_answer_arrives_is_cancelled(tmp_path: Path) -> None:
    engine = MediaEngine(engine_config(Settings(data_dir=tmp_path)), lambda notice: None)
    engine.start()
    try:

        async def quick() -> int:
            return 1

        call = asyncio.ensure_future(engine._call(quick()))
        await asyncio.sleep(0)  # the call is handed to the worker and waits
        # This loop is held while the worker answers: the answer is queued on the loop
        # ahead of the cancellation, the order in which Python 3.11's ``wait_for`` would
        # return the answer and drop the cancellation.
        time.sleep(0.2)  # noqa: ASYNC251 (the loop is held on purpose)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    finally:
        await engine.stop()


async def test_a_poll_loop_ends_when_a_step_lets_go_of_its_cancellation() -> None:
    entered = asyncio.Event()
    let_go: list[bool] = []

    async def step(ctx: Any) -> None:
        entered.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            if let_go:
                raise
            let_go.append(True)  # once, as some library code does

    loop = asyncio.ensure_future(_repeat(None, 0, step, "stepping"))  # type: ignore[arg-type]
    await entered.wait()
    loop.cancel()
    done, _ = await asyncio.wait({loop}, timeout=2)
    assert done, "the poll loop went on after it was cancelled"
    assert loop.cancelled()
