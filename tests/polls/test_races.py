"""Under load and under races: 500 delegates at once, ballots racing a close, two closes."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter

from sqlalchemy import func, select

from meeting.polls.models import Ballot, PollVoter
from server.audit import AuditRecord, verify_chain
from server.realtime.models import EventRecord
from tests.conftest import MakeServer
from tests.harness import RunningServer
from tests.polls.conftest import Assembly, build_assembly
from tests.polls.wire import Tablet


async def test_500_delegates_vote_at_once(server: RunningServer) -> None:
    a = await build_assembly(server, delegates=499, absent=0)
    assert len(a.delegates) == 500
    poll = await a.open_poll(rule="majority_of_members")
    pid = poll["id"]
    rng = random.Random(6)
    choices = [rng.choice(["yes", "yes", "no", "abstain"]) for _ in a.delegates]
    keys = [uuid.uuid4().hex for _ in a.delegates]
    # 500 tablets, each on its own keep-alive connection.
    tablets = await asyncio.gather(*(Tablet.connect(server.url, m.token) for m in a.delegates))

    async def vote(i: int) -> tuple[int, str]:
        status, body = await tablets[i].request(
            "POST",
            f"/api/v1/polls/{pid}/ballots",
            {"choice": choices[i], "idempotency_key": keys[i]},
        )
        return status, body.get("receipt") or body["error"]["code"]

    answers = await asyncio.gather(*(vote(i) for i in range(500)))
    assert [status for status, _ in answers] == [201] * 500
    # Half of them retry (lost answers): same receipts, nothing counted twice.
    again = await asyncio.gather(*(vote(i) for i in range(0, 500, 2)))
    assert again == answers[::2]
    await asyncio.gather(*(t.close() for t in tablets))
    assert (await a.close_poll(pid)).status_code == 200
    view = await a.view(pid)
    expected = Counter(choices)
    assert view["result"]["tally"] == {k: expected[k] for k in ("yes", "no", "abstain")}
    assert view["result"]["numbers"] == {
        "members": 500,
        "present": 500,
        "eligible": 500,
        "cast": 500,
    }
    assert view["result"]["passed"] == (expected["yes"] > 250)
    assert sorted(b["receipt"] for b in view["ballots"]) == sorted(r for _, r in answers)
    assert {v["user_id"]: v["choice"] for v in view["voters"]} == {
        m.id: c for m, c in zip(a.delegates, choices, strict=True)
    }
    async with server.ctx.read() as session:
        audits = (
            await session.execute(
                select(func.count())
                .select_from(AuditRecord)
                .where(AuditRecord.action == "poll.vote", AuditRecord.subject == f"poll:{pid}")
            )
        ).scalar()
        progress = (
            await session.execute(
                select(func.count())
                .select_from(EventRecord)
                .where(EventRecord.type == "poll.progress")
            )
        ).scalar()
    assert audits == 500
    # The batched poll.vote records continue the hash chain exactly.
    async with server.ctx.read() as session:
        chain = await verify_chain(session)
    assert chain.ok, chain.problem
    # Coalesced: far fewer progress events than ballots.
    assert progress is not None and 1 <= progress < 100
    await a.close()


async def _count_rows(server: RunningServer, pid: int) -> tuple[int, int]:
    async with server.ctx.read() as session:
        voters = (
            await session.execute(
                select(func.count()).select_from(PollVoter).where(PollVoter.poll_id == pid)
            )
        ).scalar_one()
        ballots = (
            await session.execute(
                select(func.count()).select_from(Ballot).where(Ballot.poll_id == pid)
            )
        ).scalar_one()
    return int(voters), int(ballots)


async def _race_ballots_with_close(a: Assembly, tablets: list[Tablet], *, secret: bool) -> None:
    poll = await a.open_poll(secret=secret)
    pid = poll["id"]
    choices = [random.choice(["yes", "no", "abstain"]) for _ in a.delegates]
    first_answers = asyncio.Event()
    answered = 0

    async def vote(i: int) -> tuple[int, str]:
        nonlocal answered
        if i >= 20:
            # The later ones arrive while the close is under way.
            await first_answers.wait()
        status, body = await tablets[i].request(
            "POST",
            f"/api/v1/polls/{pid}/ballots",
            {"choice": choices[i], "idempotency_key": uuid.uuid4().hex},
        )
        answered += 1
        if answered == 10:
            first_answers.set()
        return status, body.get("receipt") or body["error"]["code"]

    async def close_soon() -> int:
        await first_answers.wait()
        return (await a.close_poll(pid)).status_code

    closing = asyncio.create_task(close_soon())
    answers = await asyncio.gather(*(vote(i) for i in range(len(a.delegates))))
    assert await closing == 200
    counted = {i: r for i, (s, r) in enumerate(answers) if s == 201}
    refused = [r for s, r in answers if s != 201]
    assert set(refused) <= {"poll_closed"}, refused
    assert {s for s, _ in answers} <= {201, 409}
    assert len(counted) >= 10
    view = await a.view(pid)
    tally = Counter(choices[i] for i in counted)
    assert view["result"]["tally"] == {k: tally[k] for k in ("yes", "no", "abstain")}
    assert view["result"]["numbers"]["cast"] == len(counted)
    assert sorted(b["receipt"] for b in view["ballots"]) == sorted(counted.values())
    assert await _count_rows(a.server, pid) == (len(counted), len(counted))


async def test_ballots_racing_a_close(make_server: MakeServer) -> None:
    first = await make_server()
    second = await make_server()
    a = await build_assembly(first, delegates=60, absent=0)
    # Every other tablet talks to the other node.
    tablets = await asyncio.gather(
        *(
            Tablet.connect((first if i % 2 else second).url, m.token)
            for i, m in enumerate(a.delegates)
        )
    )
    for secret in (False, True):
        await _race_ballots_with_close(a, list(tablets), secret=secret)
    await asyncio.gather(*(t.close() for t in tablets))
    await a.close()


async def test_two_closes_racing_give_one_result(make_server: MakeServer) -> None:
    first = await make_server()
    second = await make_server()
    a = await build_assembly(first, delegates=5, absent=0)
    poll = await a.open_poll()
    for member in a.delegates[:4]:
        assert (await a.vote(member, poll["id"], "yes")).status_code == 201

    async def close(node: RunningServer, who: str) -> tuple[int, str]:
        token = a.chair.token if who == "chair" else a.secretary.token
        async with node.http(token) as client:
            response = await client.post(f"/api/v1/polls/{poll['id']}/close")
        body = response.json()
        return response.status_code, body.get("state") or body["error"]["code"]

    answers = await asyncio.gather(
        close(first, "chair"),
        close(second, "secretary"),
        close(first, "secretary"),
        close(second, "chair"),
    )
    assert sorted(answers) == [(200, "closed")] + [(409, "poll_closed")] * 3
    async with first.ctx.read() as session:
        events = (
            (
                await session.execute(
                    select(EventRecord.data).where(EventRecord.type == "poll.closed")
                )
            )
            .scalars()
            .all()
        )
        audits = (
            await session.execute(
                select(func.count())
                .select_from(AuditRecord)
                .where(AuditRecord.action == "poll.close")
            )
        ).scalar()
    assert len(events) == 1 and audits == 1
    assert events[0]["result"]["tally"] == {"yes": 4, "no": 0, "abstain": 0}
    await a.close()
