"""The group-commit mechanism on its own: a fault in one item fails that item alone (its
rows and its events rolled back to its savepoint), judgement happens before the queue,
overload is 429 ``busy``, a stopped writer answers 503 ``shutting_down``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from sqlalchemy import select

from server.audit import AuditEntry, AuditRecord, verify_chain
from server.context import Write
from server.errors import ApiError, Conflict
from server.group_commit import Applied, GroupCommit, ShuttingDown
from server.realtime.models import EventRecord
from tests.conftest import MakeServer
from tests.harness import RunningServer, eventually


class Broken(RuntimeError):
    pass


class Notes(GroupCommit[int, None, int]):
    """Writes an event and an audit record per item; refuses 13, breaks on 7 after writing."""

    what = "notes"

    def judge(self, item: int) -> None:
        if item < 0:
            raise ApiError("negative", code="negative")

    async def prepare(self, w: Write, items: Sequence[int]) -> None:
        return None

    async def apply(self, w: Write, item: int, prepared: None) -> Applied[int]:
        await w.emit(f"note:{item}", "note.written", {"n": item})
        if item == 13:
            raise Conflict("unlucky", code="unlucky")
        if item == 7:
            raise Broken("a fault after writing")
        return Applied(item * 2, audit=[AuditEntry(None, "note.write", f"note:{item}")])


class QuickNotes(Notes):
    """Without a savepoint per item: refuses 13 before writing anything (as such a kind
    must); 7 still breaks after writing, which fails the batch and sends each item alone."""

    def isolate(self, item: int) -> bool:
        return False

    async def apply(self, w: Write, item: int, prepared: None) -> Applied[int]:
        if item == 13:
            raise Conflict("unlucky", code="unlucky")
        return await super().apply(w, item, prepared)


async def _topics(server: RunningServer) -> list[str]:
    async with server.ctx.read() as session:
        return sorted(
            (
                await session.execute(
                    select(EventRecord.topic).where(EventRecord.type == "note.written")
                )
            ).scalars()
        )


@pytest.mark.parametrize("kind", [Notes, QuickNotes])
async def test_a_fault_fails_its_item_alone(make_server: MakeServer, kind: type[Notes]) -> None:
    server = await make_server(features=[])
    notes = kind(server.ctx, batch_size=100, queue_limit=100)
    runner = asyncio.create_task(notes.run())
    try:
        async with server.ctx.write():
            # The write path is held: the first item waits inside the writer, the rest
            # queue and form one batch.
            calls = [asyncio.ensure_future(notes.submit(n)) for n in range(1, 16)]
            with pytest.raises(ApiError):
                await notes.submit(-1)
            await eventually(lambda: notes.waiting >= 15, "15 notes queued")
        results = await asyncio.gather(*calls, return_exceptions=True)
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
    by_item = dict(zip(range(1, 16), results, strict=True))
    assert isinstance(by_item[7], Broken)
    assert isinstance(by_item[13], Conflict)
    assert {n: r for n, r in by_item.items() if n not in (7, 13)} == {
        n: n * 2 for n in range(1, 16) if n not in (7, 13)
    }
    assert await _topics(server) == sorted(f"note:{n}" for n in range(1, 16) if n not in (7, 13))
    async with server.ctx.read() as session:
        audits = (
            (
                await session.execute(
                    select(AuditRecord.subject).where(AuditRecord.action == "note.write")
                )
            )
            .scalars()
            .all()
        )
        assert sorted(audits) == sorted(f"note:{n}" for n in range(1, 16) if n not in (7, 13))
        chain = await verify_chain(session)
    assert chain.ok, chain.problem


async def test_overload_is_busy_and_a_stopped_writer_answers_503(make_server: MakeServer) -> None:
    server = await make_server(features=[])
    notes = Notes(server.ctx, batch_size=10, queue_limit=2)
    with pytest.raises(ShuttingDown) as not_yet:
        await notes.submit(1)
    assert (not_yet.value.status, not_yet.value.code) == (503, "shutting_down")
    runner = asyncio.create_task(notes.run())
    await asyncio.sleep(0)
    async with server.ctx.write():
        first = asyncio.ensure_future(notes.submit(1))
        await eventually(lambda: notes.waiting and not notes.pending, "the writer holding it")
        queued = [asyncio.ensure_future(notes.submit(n)) for n in (2, 3)]
        await asyncio.sleep(0)
        with pytest.raises(ApiError) as full:
            await notes.submit(4)
        assert (full.value.status, full.value.code) == (429, "busy")
        assert full.value.details == {"retry_after": 1}
        # /metrics shows what waits: the one being written and the two queued.
        assert (
            'dienhong_write_queue_depth{kind="notes"} 3.0' in server.ctx.metrics.render().decode()
        )
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
    for call in [first, *queued]:
        with pytest.raises(ShuttingDown):
            await call
    assert await _topics(server) == []
