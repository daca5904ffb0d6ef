"""The audit chain is anchored outside the database: signed checkpoints in a file catch a
chain rewritten and recomputed, and a tail cut together with the head row."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import delete, func, select, update

from server.audit import AuditHead, AuditRecord, record_hash
from server.audit_anchor import (
    NodeKeySigner,
    checkpoint_now,
    checkpoint_path,
    last_checkpoint,
    read_checkpoints,
)
from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.harness import RunningServer
from tests.server.support import small_city
from tests.server.test_cli import on


async def anchored_server(make_server: MakeServer) -> RunningServer:
    # Checkpoints are written by the test, not by the periodic job.
    server = await make_server(audit_checkpoint_interval_secs=0)
    await small_city(server)
    for username in ("admin", "ward001", "chair"):
        await server.login(username, DEMO_PASSWORD)
    return server


async def checkpoint(server: RunningServer) -> None:
    written = await checkpoint_now(server.ctx, NodeKeySigner.for_node(server.settings))
    assert written is not None


async def tamper(server: RunningServer, *statements: Any) -> None:
    async with server.ctx.db.write_session() as session:
        for statement in statements:
            await session.execute(statement)


async def chain(server: RunningServer) -> list[AuditRecord]:
    async with server.ctx.read() as session:
        return list(
            (await session.execute(select(AuditRecord).order_by(AuditRecord.seq))).scalars().all()
        )


async def test_checkpoints_are_signed_appended_and_offered_to_the_minutes(
    make_server: MakeServer,
) -> None:
    server = await anchored_server(make_server)
    await checkpoint(server)
    # Nothing new: no second line for the same head.
    assert await checkpoint_now(server.ctx, NodeKeySigner.for_node(server.settings)) is None
    await server.login("ward002", DEMO_PASSWORD)
    await checkpoint(server)
    found = read_checkpoints(checkpoint_path(server.settings))
    assert len(found) == 2 and found[0].seq < found[1].seq
    records = await chain(server)
    assert (found[1].seq, found[1].hash) == (records[-1].seq, records[-1].hash)
    assert last_checkpoint(server.settings) == found[1]
    assert checkpoint_path(server.settings).stat().st_mode & 0o077 == 0
    clean = await on(server, "verify-audit")
    assert clean.code == 0 and "2 signed checkpoints agree" in clean.out, clean.err


async def test_tail_removed_with_the_head_row_is_caught(make_server: MakeServer) -> None:
    server = await anchored_server(make_server)
    await checkpoint(server)
    records = await chain(server)
    cut = records[-2].seq
    # The tail and the head row go: the chain that is left is internally consistent.
    await tamper(server, delete(AuditRecord).where(AuditRecord.seq >= cut), delete(AuditHead))
    missing_head = await on(server, "verify-audit")
    assert missing_head.code == 1 and "head row is missing" in missing_head.err
    # Even with a head row forged to match the shortened chain, the checkpoint holds.
    await tamper(
        server, AuditHead.__table__.insert().values(id=1, seq=cut - 1, hash=records[cut - 2].hash)
    )
    forged = await on(server, "verify-audit")
    assert forged.code == 1 and "removed from the end" in forged.err, forged.err


async def test_rewritten_and_recomputed_chain_is_caught(make_server: MakeServer) -> None:
    server = await anchored_server(make_server)
    await checkpoint(server)
    records = await chain(server)
    # Rewrite record 2's subject, then recompute every later hash and the head.
    prev = records[0].hash
    statements: list[Any] = []
    for row in records[1:]:
        subject = "user:someone-else" if row.seq == 2 else row.subject
        digest = record_hash(row.seq, row.at, row.actor_id, row.action, subject, row.details, prev)
        statements.append(
            update(AuditRecord)
            .where(AuditRecord.seq == row.seq)
            .values(subject=subject, prev_hash=prev, hash=digest)
        )
        prev = digest
    statements.append(update(AuditHead).values(hash=prev))
    await tamper(server, *statements)
    async with server.ctx.read() as session:
        assert (
            await session.execute(select(func.count()).select_from(AuditRecord))
        ).scalar_one() == len(records)
    caught = await on(server, "verify-audit")
    assert caught.code == 1, caught.out
    assert f"record {records[-1].seq} differs from its checkpoint" in caught.err


async def test_a_forged_checkpoint_is_refused(make_server: MakeServer) -> None:
    server = await anchored_server(make_server)
    await checkpoint(server)
    path = checkpoint_path(server.settings)
    line = json.loads(path.read_text().splitlines()[-1])
    line["seq"] -= 1
    with path.open("a") as f:
        f.write(json.dumps(line) + "\n")
    forged = await on(server, "verify-audit")
    assert forged.code == 1 and "not signed by a known key" in forged.err
    path.write_text(path.read_text() + "not json\n")
    unreadable = await on(server, "verify-audit")
    assert unreadable.code == 1 and "not a checkpoint" in unreadable.err


async def test_no_checkpoints_at_all_is_reported(make_server: MakeServer) -> None:
    server = await anchored_server(make_server)
    checkpoint_path(server.settings).unlink(missing_ok=True)
    unanchored = await on(server, "verify-audit")
    assert unanchored.code == 0 and "0 signed checkpoints" in unanchored.out
    assert "not anchored" in unanchored.err
