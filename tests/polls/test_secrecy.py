"""A secret poll, looked at from the stored data: nothing links a voter to a choice."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import OperationalError

from tests.harness import RunningServer
from tests.polls.conftest import build_assembly


async def test_stored_rows_of_a_secret_poll_do_not_link_voter_and_choice(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    a = await build_assembly(server, delegates=8, absent=0)
    poll = await a.open_poll(
        secret=True, kind="choice", options=["Lê Văn An", "Trần Thị Bình"], max_choices=1
    )
    pid = poll["id"]
    keys = {m.id: uuid.uuid4().hex for m in a.delegates}
    receipts = {}
    for i, member in enumerate(a.delegates):
        response = await a.vote(
            member, pid, ["Lê Văn An" if i % 3 else "Trần Thị Bình"], keys[member.id]
        )
        assert response.status_code == 201
        receipts[member.id] = response.json()["receipt"]
    secrets = set(receipts.values()) | set(keys.values())
    async with server.http(a.chair.token) as chair:
        open_view = (await chair.get(f"/api/v1/polls/{pid}")).json()
    assert "voters" not in open_view and "ballots" not in open_view
    assert (await a.close_poll(pid)).status_code == 200
    view = await a.view(pid)
    assert "voters" not in view
    assert sorted(b["receipt"] for b in view["ballots"]) == sorted(receipts.values())

    engine = server.ctx.db.write_engine
    async with engine.connect() as conn:
        dialect = conn.dialect.name

        def columns(sync_conn, table: str) -> list[str]:  # type: ignore[no-untyped-def]
            return [c["name"] for c in inspect(sync_conn).get_columns(table)]

        # The box holds receipt and choice, nothing else: no id, no time, no voter.
        assert sorted(await conn.run_sync(columns, "poll_ballots")) == [
            "choice",
            "poll_id",
            "receipt",
        ]
        roll = (
            await conn.execute(
                text(
                    "SELECT user_id, retry_check, choice, receipt FROM poll_voters "
                    "WHERE poll_id = :p ORDER BY user_id"
                ),
                {"p": pid},
            )
        ).all()
        box = (
            await conn.execute(
                text("SELECT receipt, choice FROM poll_ballots WHERE poll_id = :p"), {"p": pid}
            )
        ).all()
        assert len(roll) == len(box) == 9
        assert sorted(r[0] for r in roll) == sorted(m.id for m in a.delegates)
        # The roll keeps neither choice nor receipt, and its check matches nothing stored
        # in the box (it is a hash that needs the tablet's key, which is nowhere stored).
        assert all(r[2] is None and r[3] is None for r in roll)
        stored_values = {value for row in box for value in (row[0], str(row[1]))}
        assert not {r[1] for r in roll} & stored_values
        assert not any(r[1][:32] in stored_values for r in roll)
        if dialect == "sqlite":
            # No hidden insertion counter: the tables are WITHOUT ROWID.
            for table in ("poll_ballots", "poll_voters"):
                with pytest.raises(OperationalError):
                    await conn.execute(text(f"SELECT rowid FROM {table}"))
        else:
            # Every row of the poll was rewritten by the closing transaction, in sorted order:
            # xmin (the writing transaction) and ctid (the place) say nothing about who.
            ballots = (
                await conn.execute(
                    text(
                        "SELECT xmin::text, ctid::text, receipt FROM poll_ballots "
                        "WHERE poll_id = :p "
                        "ORDER BY ctid"
                    ),
                    {"p": pid},
                )
            ).all()
            voters = (
                await conn.execute(
                    text(
                        "SELECT xmin::text, ctid::text, user_id FROM poll_voters "
                        "WHERE poll_id = :p "
                        "ORDER BY ctid"
                    ),
                    {"p": pid},
                )
            ).all()
            assert len({row[0] for row in ballots} | {row[0] for row in voters}) == 1
            assert [row[2] for row in ballots] == sorted(row[2] for row in ballots)
            assert [row[2] for row in voters] == sorted(row[2] for row in voters)
            sequences = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM information_schema.columns WHERE table_name IN "
                        "('poll_ballots', 'poll_voters') AND column_default LIKE 'nextval%'"
                    )
                )
            ).scalar()
            assert sequences == 0
        # The audit log has the roll entries (who voted), never a choice or a receipt.
        audit = (
            await conn.execute(
                text(
                    "SELECT actor_id, details FROM audit_log "
                    "WHERE subject = :s AND action = 'poll.vote'"
                ),
                {"s": f"poll:{pid}"},
            )
        ).all()
        assert sorted(r[0] for r in audit) == sorted(m.id for m in a.delegates)
        for _, details in audit:
            assert (json.loads(details) if isinstance(details, str) else details) == {}
        everything = (await conn.execute(text("SELECT details FROM audit_log"))).scalars().all()
        events = (await conn.execute(text("SELECT type, data FROM events"))).all()
    for blob in [*map(str, everything), *(str(e[1]) for e in events)]:
        assert not any(secret in blob for secret in secrets), blob
    # Events: progress carries only the count.
    progress = [
        json.loads(d) if isinstance(d, str) else d for t, d in events if t == "poll.progress"
    ]
    assert progress and all(set(p) == {"poll_id", "cast"} for p in progress)
    # Nothing in the logs either.
    for record in caplog.records:
        message = record.getMessage() + " " + str(vars(record))
        assert not any(secret in message for secret in secrets), message
    if dialect == "postgresql":
        # After a secret close the ballot tables are vacuumed (old row versions removed).
        for _ in range(100):
            async with engine.connect() as conn:
                counts = (
                    (
                        await conn.execute(
                            text(
                                "SELECT relname, vacuum_count FROM pg_stat_user_tables "
                                "WHERE relname IN ('poll_ballots', 'poll_voters')"
                            )
                        )
                    )
                    .tuples()
                    .all()
                )
            if len(counts) == 2 and all(count > 0 for _, count in counts):
                break
            await asyncio.sleep(0.1)
        assert len(counts) == 2 and all(count > 0 for _, count in counts), counts
    await a.close()


async def test_a_voter_can_verify_its_receipt_but_others_learn_nothing(
    server: RunningServer,
) -> None:
    a = await build_assembly(server, delegates=3, absent=0)
    poll = await a.open_poll(secret=True)
    response = await a.vote(a.delegates[1], poll["id"], "no")
    receipt = response.json()["receipt"]
    assert (await a.close_poll(poll["id"])).status_code == 200
    async with server.http(a.delegates[1].token) as voter:
        check = (await voter.get(f"/api/v1/polls/{poll['id']}/receipts/{receipt}")).json()
    assert check == {"receipt": receipt, "counted": True, "choice": "no"}
    view = await a.view(poll["id"], a.delegates[2])
    assert view["ballots"] == [{"receipt": receipt, "choice": "no"}]
    assert len(view["ballots_digest"]) == 64
    await a.close()


async def test_receipts_are_checked_only_after_the_close(server: RunningServer) -> None:
    a = await build_assembly(server, delegates=3, absent=0)
    poll = await a.open_poll(secret=True)
    receipt = (await a.vote(a.delegates[1], poll["id"], "yes")).json()["receipt"]
    async with server.http(a.delegates[1].token) as voter:
        # While the vote runs, a receipt proves nothing to anyone (no coercion).
        early = await voter.get(f"/api/v1/polls/{poll['id']}/receipts/{receipt}")
        assert early.status_code == 409, early.text
        assert early.json()["error"]["code"] == "poll_not_closed"
        assert "yes" not in early.text
        unknown = await voter.get(f"/api/v1/polls/{poll['id']}/receipts/{'0' * 32}")
        assert unknown.status_code == 409
        assert (await a.close_poll(poll["id"])).status_code == 200
        late = await voter.get(f"/api/v1/polls/{poll['id']}/receipts/{receipt}")
    assert late.json() == {"receipt": receipt, "counted": True, "choice": "yes"}
    await a.close()
