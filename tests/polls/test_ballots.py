"""Ballots: who may vote, retries, refusals with their codes (nothing stored), deadlines."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from server.clock import ManualClock
from tests.conftest import MakeServer
from tests.harness import RunningServer, eventually
from tests.polls.conftest import Assembly, build_assembly, stored
from tests.polls.wire import Tablet


async def test_retry_with_the_same_key_gets_the_same_answer(server: RunningServer) -> None:
    a = await build_assembly(server, delegates=3, absent=0)
    poll = await a.open_poll(secret=True)
    voter = a.delegates[1]
    key = uuid.uuid4().hex
    first = await a.vote(voter, poll["id"], "yes", key)
    assert first.status_code == 201
    after_first = await stored(server, poll["id"])
    # A tablet that lost the answer retries, several times, even concurrently.
    retries = await asyncio.gather(*(a.vote(voter, poll["id"], "yes", key) for _ in range(5)))
    assert {(r.status_code, r.json()["receipt"]) for r in retries} == {
        (201, first.json()["receipt"])
    }
    assert await stored(server, poll["id"]) == after_first
    # A second, different ballot: refused, and the first one stands.
    for choice, other_key in (("no", uuid.uuid4().hex), ("no", key), ("yes", uuid.uuid4().hex)):
        response = await a.vote(voter, poll["id"], choice, other_key)
        assert (response.status_code, response.json()["error"]["code"]) == (409, "already_voted"), (
            choice,
            other_key == key,
        )
    assert await stored(server, poll["id"]) == after_first
    # The same answer even after the poll closed (the response was lost before the close).
    assert (await a.close_poll(poll["id"])).status_code == 200
    late = await a.vote(voter, poll["id"], "yes", key)
    assert (late.status_code, late.json()) == (201, first.json())
    assert (await a.view(poll["id"]))["result"]["tally"] == {"yes": 1, "no": 0, "abstain": 0}
    await a.close()


async def test_refusals_have_their_code_and_store_nothing(server: RunningServer) -> None:
    a = await build_assembly(server, delegates=3, absent=1)
    draft = await a.create_poll()
    choice_poll = await a.open_poll(kind="choice", options=["An", "Bình", "Cường"], max_choices=2)
    poll = await a.open_poll()
    assert (await a.vote(a.delegates[1], poll["id"], "yes")).status_code == 201
    closed = await a.open_poll()
    assert (await a.close_poll(closed["id"])).status_code == 200
    voter = a.delegates[2]
    cases = [
        (a.guest, poll["id"], "yes", 403, "no_vote"),
        (a.secretary, poll["id"], "yes", 403, "no_vote"),
        (a.absent[0], poll["id"], "yes", 409, "not_checked_in"),
        (a.outsider, poll["id"], "yes", 403, "not_a_participant"),
        (voter, poll["id"], "maybe", 422, "unknown_option"),
        (voter, poll["id"], ["yes"], 422, "invalid_choice"),
        (voter, choice_poll["id"], ["An", "Bình", "Cường"], 422, "too_many_choices"),
        (voter, choice_poll["id"], ["Dũng"], 422, "unknown_option"),
        (voter, choice_poll["id"], ["An", "An"], 422, "duplicate_choice"),
        (voter, draft["id"], "yes", 409, "poll_not_open"),
        (voter, closed["id"], "yes", 409, "poll_closed"),
        (voter, 987654, "yes", 404, "poll_not_found"),
    ]
    polls = [draft["id"], choice_poll["id"], poll["id"], closed["id"]]
    before = {pid: await stored(server, pid) for pid in polls}
    for member, pid, choice, status, code in cases:
        response = await a.vote(member, pid, choice)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), (
            member.name,
            pid,
            choice,
            response.text,
        )
    async with server.http(voter.token) as client:
        for body in (
            {"choice": "yes", "idempotency_key": "short"},
            {"choice": "yes"},
            {"choice": 1, "idempotency_key": uuid.uuid4().hex},
            {"choice": "yes", "idempotency_key": uuid.uuid4().hex, "who": 1},
        ):
            response = await client.post(f"/api/v1/polls/{poll['id']}/ballots", json=body)
            assert (response.status_code, response.json()["error"]["code"]) == (
                400,
                "invalid_request",
            ), body
        response = await client.post(f"/api/v1/polls/{poll['id']}/ballots", content=b"{nope")
        assert response.json()["error"]["code"] == "invalid_json"
    async with server.http() as anonymous:
        response = await anonymous.post(
            f"/api/v1/polls/{poll['id']}/ballots",
            json={"choice": "yes", "idempotency_key": "k" * 20},
        )
        assert response.status_code == 401
    assert {pid: await stored(server, pid) for pid in polls} == before
    # The meeting adjourns: ballots wait until it sits again.
    async with server.http(a.chair.token) as chair:
        assert (await chair.post(f"/api/v1/meetings/{a.meeting_id}/adjourn")).status_code == 200
    response = await a.vote(voter, poll["id"], "yes")
    assert response.json()["error"]["code"] == "meeting_not_in_session"
    assert {pid: await stored(server, pid) for pid in polls} == before
    await a.close()


async def test_a_reused_key_of_another_voter_is_refused(server: RunningServer) -> None:
    a = await build_assembly(server, delegates=2, absent=0)
    poll = await a.open_poll(secret=True)
    key = "the-same-key-on-two-tablets"
    assert (await a.vote(a.delegates[0], poll["id"], "yes", key)).status_code == 201
    before = await stored(server, poll["id"])
    response = await a.vote(a.delegates[1], poll["id"], "no", key)
    assert (response.status_code, response.json()["error"]["code"]) == (
        409,
        "idempotency_key_reused",
    )
    assert await stored(server, poll["id"]) == before
    assert (await a.vote(a.delegates[1], poll["id"], "no")).status_code == 201
    await a.close()


async def test_poll_closes_itself_at_its_deadline(make_server: MakeServer) -> None:
    clock = ManualClock()
    server = await make_server(clock=clock)
    a = await build_assembly(server, delegates=3, absent=0)
    poll = await a.open_poll(duration_secs=60)
    assert poll["closes_at"] is not None
    topic = f"meeting:{a.meeting_id}"
    async with server.socket(a.delegates[1].token) as tablet:
        await tablet.subscribe({topic: tablet.last.get(topic, 0)})
        assert (await a.vote(a.delegates[0], poll["id"], "yes")).status_code == 201
        await clock.advance(59)
        assert (await a.vote(a.delegates[1], poll["id"], "no")).status_code == 201
        await clock.advance(1)
        # At the deadline a ballot is refused even before the closer has run.
        response = await a.vote(a.delegates[2], poll["id"], "yes")
        assert response.json()["error"]["code"] == "poll_closed"
        closed = await tablet.next_event("poll.closed")
    assert closed["data"]["result"]["tally"] == {"yes": 1, "no": 1, "abstain": 0}
    view = await a.view(poll["id"])
    assert view["state"] == "closed" and view["cast"] == 2
    await a.close()


async def test_deadline_survives_a_restart(make_server: MakeServer) -> None:
    clock = ManualClock()
    first = await make_server(clock=clock)
    a = await build_assembly(first, delegates=2, absent=0)
    poll = await a.open_poll(duration_secs=120)
    assert (await a.vote(a.delegates[0], poll["id"], "yes")).status_code == 201
    await a.close()
    await first.stop()
    # A new process on the same database, its clock already past the deadline.
    clock_after = ManualClock(clock.now())
    second = await make_server(clock=clock_after)
    a.server = second
    await clock_after.advance(121)
    view = await eventually(
        lambda: _closed_view(a, poll["id"]), "the poll closed by its deadline", timeout=4
    )
    assert view["result"]["tally"]["yes"] == 1
    await a.close()


async def test_a_full_ballot_queue_refuses_with_429_and_stores_nothing(
    make_server: MakeServer,
) -> None:
    server = await make_server(poll_ballot_queue=1, poll_ballot_batch=1)
    a = await build_assembly(server, delegates=39, absent=0)
    poll = await a.open_poll()
    keys = [uuid.uuid4().hex for _ in a.delegates]
    tablets = await asyncio.gather(*(Tablet.connect(server.url, m.token) for m in a.delegates))

    async def vote(i: int) -> tuple[int, str]:
        status, body = await tablets[i].request(
            "POST",
            f"/api/v1/polls/{poll['id']}/ballots",
            {"choice": "yes", "idempotency_key": keys[i]},
        )
        return status, body.get("receipt") or body["error"]["code"]

    answers = await asyncio.gather(*(vote(i) for i in range(40)))
    assert {(s, r) for s, r in answers if s != 201} <= {(429, "busy")}
    assert (429, "busy") in answers
    counted = sum(1 for s, _ in answers if s == 201)
    assert len((await stored(server, poll["id"]))["ballots"]) == counted
    # The refused tablets retry with the same key, one after the other: all counted.
    for i, (status, _) in enumerate(answers):
        if status == 429:
            assert (await vote(i))[0] == 201
    assert len((await stored(server, poll["id"]))["ballots"]) == 40
    await asyncio.gather(*(t.close() for t in tablets))
    await a.close()


async def _closed_view(a: Assembly, poll_id: int) -> dict[str, Any] | None:
    view = await a.view(poll_id)
    return view if view["state"] == "closed" else None
