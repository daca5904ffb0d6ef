"""Polls over real HTTP and sockets: lifecycle, results, receipts, live progress."""

from __future__ import annotations

from typing import Any

from meeting.polls.receipts import receipt_for
from tests.harness import RunningServer
from tests.polls.conftest import build_assembly, stored


async def test_named_poll_from_draft_to_published_result(server: RunningServer) -> None:
    a = await build_assembly(server, delegates=6, absent=2)
    poll = await a.create_poll(rule="majority_of_members")
    assert poll["state"] == "draft" and poll["secret"] is False
    pid = poll["id"]
    async with server.socket(a.delegates[1].token) as tablet:
        await tablet.subscribe(
            {f"meeting:{a.meeting_id}": tablet.last.get(f"meeting:{a.meeting_id}", 0)}
        )
        async with server.http(a.chair.token) as chair:
            response = await chair.post(f"/api/v1/polls/{pid}/open")
            assert response.status_code == 200
        opened = await tablet.next_event("poll.opened")
        assert opened["data"]["poll"]["id"] == pid
        choices = ["yes", "yes", "yes", "yes", "no", "abstain"]
        receipts = {}
        for member, choice in zip(a.delegates, choices, strict=False):
            key = f"tablet-{member.id}-0123456789"
            response = await a.vote(member, pid, choice, key)
            assert response.status_code == 201, response.text
            receipts[member.id] = response.json()["receipt"]
            assert receipts[member.id] == receipt_for(pid, key)
        progress = await tablet.next_event("poll.progress")
        assert progress["data"]["poll_id"] == pid and 1 <= progress["data"]["cast"] <= 6
        view = await a.view(pid)
        assert view["state"] == "open" and view["cast"] == 6
        # Members: chair + 6 delegates + 2 absent = 9; present 7 (incl. chair) -> eligible 7.
        assert view["eligible"] == 7
        assert "voters" not in view
        waiting = view["not_voted"]
        assert {w["user_id"] for w in waiting} == {a.delegates[6].id, *(m.id for m in a.absent)}
        assert all(set(w) == {"user_id", "display_name", "present"} for w in waiting)
        # A delegate does not see who has not voted.
        assert "not_voted" not in await a.view(pid, a.delegates[1])
        response = await a.close_poll(pid)
        assert response.status_code == 200, response.text
        closed = await tablet.next_event("poll.closed")
    result = closed["data"]["result"]
    assert result["tally"] == {"yes": 4, "no": 1, "abstain": 1}
    assert result["numbers"] == {"members": 9, "present": 7, "eligible": 7, "cast": 6}
    # 4 yes is not more than half of the 9 members.
    assert result["passed"] is False and result["rule"] == "majority_of_members"
    view = await a.view(pid, a.delegates[2])
    assert view["state"] == "closed" and view["result"] == result
    assert {v["user_id"]: v["choice"] for v in view["voters"]} == {
        m.id: c for m, c in zip(a.delegates, choices, strict=False)
    }
    assert {v["user_id"]: v["receipt"] for v in view["voters"]} == receipts
    assert sorted(b["receipt"] for b in view["ballots"]) == sorted(receipts.values())
    async with server.http(a.delegates[4].token) as client:
        response = await client.get(f"/api/v1/polls/{pid}/receipts/{receipts[a.delegates[4].id]}")
        assert response.json() == {
            "receipt": receipts[a.delegates[4].id],
            "counted": True,
            "choice": "no",
        }
        response = await client.get(f"/api/v1/polls/{pid}/receipts/{'0' * 32}")
        assert response.json()["counted"] is False
        state = (await client.get(f"/api/v1/meetings/{a.meeting_id}")).json()
    assert [p["id"] for p in state["polls"]] == [pid]
    assert state["polls"][0]["result"] == result and state["polls"][0]["cast"] == 6
    await a.close()


async def test_choice_poll_elects_and_majority_of_cast(server: RunningServer) -> None:
    a = await build_assembly(server, delegates=5, absent=0)
    poll = await a.open_poll(
        kind="choice",
        options=["Lê Văn An", "Trần Thị Bình", "Phạm Văn Cường"],
        max_choices=2,
        rule="majority_of_cast",
        secret=True,
    )
    ballots = [
        ["Lê Văn An", "Trần Thị Bình"],
        ["Lê Văn An"],
        ["Phạm Văn Cường", "Lê Văn An"],
        ["Trần Thị Bình", "Lê Văn An"],
        [],
        ["Trần Thị Bình"],
    ]
    for member, choice in zip(a.delegates, ballots, strict=True):
        assert (await a.vote(member, poll["id"], choice)).status_code == 201
    assert (await a.close_poll(poll["id"])).status_code == 200
    view = await a.view(poll["id"])
    result = view["result"]
    assert result["tally"] == {"Lê Văn An": 4, "Trần Thị Bình": 3, "Phạm Văn Cường": 1}
    # 3 of 6 cast is not more than half: only An is elected to the two seats.
    assert result["elected"] == ["Lê Văn An"]
    assert result["numbers"]["cast"] == 6 and result["passed"] is True
    assert "voters" not in view
    assert sorted(b["choice"] for b in view["ballots"]) == sorted(
        [sorted(b, key=["Lê Văn An", "Trần Thị Bình", "Phạm Văn Cường"].index) for b in ballots]
    )
    await a.close()


async def test_only_officers_run_polls(server: RunningServer) -> None:
    a = await build_assembly(server, delegates=2, absent=0)
    poll = await a.create_poll()
    before = await stored(server, poll["id"])
    async with server.http(a.delegates[1].token) as delegate:
        response = await delegate.post(
            f"/api/v1/meetings/{a.meeting_id}/polls", json={"title": "Bỏ phiếu"}
        )
        assert (response.status_code, response.json()["error"]["code"]) == (403, "not_officer")
        for action in ("open", "close"):
            response = await delegate.post(f"/api/v1/polls/{poll['id']}/{action}")
            assert response.status_code == 403
            assert response.json()["error"]["code"] == "not_officer"
    async with server.http(a.outsider.token) as outsider:
        response = await outsider.get(f"/api/v1/polls/{poll['id']}")
        assert response.status_code == 404
    async with server.http(a.secretary.token) as secretary:
        response = await secretary.post(f"/api/v1/polls/{poll['id']}/close")
        assert (response.status_code, response.json()["error"]["code"]) == (409, "poll_not_open")
    assert await stored(server, poll["id"]) == before
    async with server.http(a.secretary.token) as secretary:
        assert (await secretary.post(f"/api/v1/polls/{poll['id']}/open")).status_code == 200
        response = await secretary.post(f"/api/v1/polls/{poll['id']}/open")
        assert response.json()["error"]["code"] == "poll_already_open"
    await a.close()


async def test_bad_poll_definitions_are_refused(server: RunningServer) -> None:
    a = await build_assembly(server, delegates=1, absent=0)
    bad: list[tuple[dict[str, Any], int, str]] = [
        ({"kind": "choice", "options": ["A"]}, 422, "invalid_options"),
        ({"kind": "choice", "options": ["A", "A"]}, 422, "duplicate_options"),
        ({"kind": "choice", "options": ["A", "B"], "max_choices": 3}, 422, "invalid_max_choices"),
        ({"kind": "yes_no_abstain", "options": ["A", "B"]}, 422, "invalid_options"),
        ({"rule": "unanimity"}, 400, "invalid_request"),
        ({"duration_secs": 0}, 422, "invalid_duration"),
        ({"agenda_item_id": 999999}, 422, "agenda_item_not_found"),
        ({"title": "   "}, 422, "invalid_title"),
        ({"surprise": 1}, 400, "invalid_request"),
    ]
    async with server.http(a.chair.token) as chair:
        for extra, status, code in bad:
            body = {"title": "Biểu quyết", **extra}
            response = await chair.post(f"/api/v1/meetings/{a.meeting_id}/polls", json=body)
            assert (response.status_code, response.json()["error"]["code"]) == (status, code), (
                extra,
                response.text,
            )
        listing = await chair.get(f"/api/v1/meetings/{a.meeting_id}/polls")
    assert listing.json() == {"polls": []}
    await a.close()


def _apply(polls: list[dict[str, Any]], event: dict[str, Any]) -> None:
    """What a tablet does with the poll events of ``meeting:{id}``."""
    data = event["data"]
    if event["type"] in ("poll.created", "poll.opened"):
        polls[:] = [p for p in polls if p["id"] != data["poll"]["id"]] + [data["poll"]]
        polls.sort(key=lambda p: p["id"])
        return
    for poll in polls:
        if poll["id"] != data.get("poll_id"):
            continue
        if event["type"] == "poll.progress":
            poll["cast"] = data["cast"]
        elif event["type"] == "poll.closed":
            poll.update(
                state=data["state"],
                closed_at=data["closed_at"],
                result=data["result"],
                cast=data["result"]["numbers"]["cast"],
            )


async def test_meeting_state_plus_poll_events_equals_a_fresh_state(server: RunningServer) -> None:
    a = await build_assembly(server, delegates=4, absent=0)
    first = await a.open_poll(secret=True)
    assert (await a.vote(a.delegates[0], first["id"], "yes")).status_code == 201
    async with server.http(a.delegates[1].token) as client:
        loaded = (await client.get(f"/api/v1/meetings/{a.meeting_id}")).json()
    topic = f"meeting:{a.meeting_id}"
    events: list[dict[str, Any]] = []
    async with server.socket(a.delegates[1].token) as tablet:

        async def collect_until(done: Any) -> None:
            while True:
                event = await tablet.next_event()
                events.append(event)
                if done(event):
                    return

        await tablet.subscribe({topic: loaded["seq"]})
        for member, choice in zip(a.delegates[1:], ["no", "yes", "abstain", "yes"], strict=True):
            assert (await a.vote(member, first["id"], choice)).status_code == 201
        second = await a.open_poll(kind="choice", options=["An", "Bình"], duration_secs=600)
        assert (await a.vote(a.delegates[2], second["id"], ["Bình"])).status_code == 201
        assert (await a.close_poll(first["id"])).status_code == 200
        # The close, and the coalesced progress of the second poll (in either order).
        await collect_until(
            lambda e: (
                any(x["type"] == "poll.closed" for x in events)
                and any(x["data"] == {"poll_id": second["id"], "cast": 1} for x in events)
            )
        )
        async with server.http(a.delegates[1].token) as client:
            fresh = (await client.get(f"/api/v1/meetings/{a.meeting_id}")).json()
        if events[-1]["seq"] < fresh["seq"]:
            await collect_until(lambda e: e["seq"] >= fresh["seq"])
    polls = loaded["polls"]
    for event in events:
        if event["type"].startswith("poll."):
            _apply(polls, event)
    assert polls == fresh["polls"]
    await a.close()
