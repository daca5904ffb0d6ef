"""The list of speakers: requests, points of order, the floor, totals."""

from __future__ import annotations

from typing import Any

import pytest

from tests.meeting.conftest import Room


async def ask(room: Room, index: int, kind: str = "speech") -> dict[str, Any]:
    response = await room.delegates[index].post(room.base + "/speakers", json={"kind": kind})
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def queue_users(room: Room) -> list[tuple[int, str]]:
    return [(s["user_id"], s["kind"]) for s in (await room.state())["speakers"]["queue"]]


async def test_queue_floor_and_totals(room: Room) -> None:
    assert (await room.chair.post(room.base + "/start")).status_code == 200
    d = room.delegate_ids
    first = await ask(room, 0)
    await ask(room, 1, "question")
    await ask(room, 2, "point_of_order")
    await ask(room, 3, "point_of_order")
    assert await queue_users(room) == [(d[2], "point_of_order"), (d[3], "point_of_order"),
                                       (d[0], "speech"), (d[1], "question")]
    state = (await room.state())["speakers"]
    ids = [s["id"] for s in state["queue"]]
    response = await room.chair.post(room.base + "/speakers/reorder",
                                     json={"speaker_ids": [ids[2], ids[0], ids[1], ids[3]]})
    assert response.status_code == 200, response.text
    assert [s["id"] for s in response.json()["queue"]] == [ids[2], ids[0], ids[1], ids[3]]
    # The delegate of the question withdraws.
    response = await room.delegates[1].delete(room.base + f"/speakers/{ids[3]}")
    assert response.status_code == 204
    token = room.tokens["delegate002"]
    async with room.server.socket(token) as ws:
        await ws.subscribe({f"meeting:{room.meeting_id}": (await room.state())["seq"]})
        response = await room.chair.post(room.base + f"/speakers/{first['id']}/grant")
        assert response.status_code == 200, response.text
        granted = await ws.next_event("speaker.granted")
        assert granted["data"]["user_id"] == d[0]
        started = await ws.next_event("speaker.started")
        assert started["data"]["limit_secs"] == 300
        assert (await room.state())["speakers"]["current"]["user_id"] == d[0]
        response = await room.chair.post(room.base + f"/speakers/{first['id']}/finish")
        assert response.status_code == 204
        finished = await ws.next_event("speaker.finished")
        assert finished["data"]["user_id"] == d[0]
    speakers = (await room.state())["speakers"]
    assert speakers["current"] is None
    assert [t["user_id"] for t in speakers["totals"]] == [d[0]]
    assert speakers["totals"][0]["speeches"] == 1
    # The speaker itself may end its speech.
    response = await room.chair.post(room.base + f"/speakers/{ids[0]}/grant")
    assert response.status_code == 200
    response = await room.delegates[2].post(room.base + f"/speakers/{ids[0]}/finish")
    assert response.status_code == 204


async def test_adjourning_ends_the_speech(room: Room) -> None:
    assert (await room.chair.post(room.base + "/start")).status_code == 200
    speaker = await ask(room, 0)
    assert (await room.chair.post(room.base + f"/speakers/{speaker['id']}/grant")).is_success
    assert (await room.chair.post(room.base + "/adjourn")).status_code == 200
    speakers = (await room.state())["speakers"]
    assert speakers["current"] is None and speakers["totals"][0]["user_id"] == speaker["user_id"]


@pytest.mark.parametrize(("case", "status", "code"), [
    ("grant_twice", 409, "floor_taken"),
    ("grant_granted", 409, "speaker_not_waiting"),
    ("delegate_grants", 403, "not_chair"),
    ("secretary_grants", 403, "not_chair"),
    ("grant_adjourned", 409, "meeting_not_in_session"),
    ("finish_waiting", 409, "speaker_not_speaking"),
    ("delegate_finishes_other", 403, "not_chair"),
    ("withdraw_other", 403, "not_chair"),
    ("withdraw_speaking", 409, "speaker_not_waiting"),
    ("ask_twice", 409, "already_requested"),
    ("secretary_asks", 403, "not_allowed"),
    ("outsider_asks", 404, "meeting_not_found"),
    ("reorder_partial", 422, "queue_mismatch"),
    ("delegate_reorders", 403, "not_chair"),
    ("unknown_speaker", 404, "speaker_not_found"),
    ("bad_kind", 400, "invalid_request"),
    ("closed", 409, "meeting_closed"),
])
async def test_bad_speaker_requests_change_nothing(room: Room, case: str, status: int,
                                                   code: str) -> None:
    assert (await room.chair.post(room.base + "/start")).status_code == 200
    a = await ask(room, 0)
    b = await ask(room, 1)
    assert (await room.chair.post(room.base + f"/speakers/{a['id']}/grant")).is_success
    base = room.base
    if case == "grant_adjourned":
        await room.chair.post(base + f"/speakers/{a['id']}/finish")
        await room.chair.post(base + "/adjourn")
    if case == "closed":
        await room.chair.post(base + "/close")
    requests = {
        "grant_twice": (room.chair, "post", f"/speakers/{b['id']}/grant", None),
        "grant_granted": (room.chair, "post", f"/speakers/{a['id']}/grant", None),
        "delegate_grants": (room.delegates[1], "post", f"/speakers/{b['id']}/grant", None),
        "secretary_grants": (room.secretary, "post", f"/speakers/{b['id']}/grant", None),
        "grant_adjourned": (room.chair, "post", f"/speakers/{b['id']}/grant", None),
        "finish_waiting": (room.chair, "post", f"/speakers/{b['id']}/finish", None),
        "delegate_finishes_other": (room.delegates[1], "post", f"/speakers/{a['id']}/finish",
                                    None),
        "withdraw_other": (room.delegates[0], "delete", f"/speakers/{b['id']}", None),
        "withdraw_speaking": (room.delegates[0], "delete", f"/speakers/{a['id']}", None),
        "ask_twice": (room.delegates[1], "post", "/speakers", {"kind": "speech"}),
        "secretary_asks": (room.secretary, "post", "/speakers", {"kind": "speech"}),
        "outsider_asks": (room.outsider, "post", "/speakers", {"kind": "speech"}),
        "reorder_partial": (room.chair, "post", "/speakers/reorder", {"speaker_ids": []}),
        "delegate_reorders": (room.delegates[1], "post", "/speakers/reorder",
                              {"speaker_ids": [b["id"]]}),
        "unknown_speaker": (room.chair, "post", "/speakers/999999/grant", None),
        "bad_kind": (room.delegates[2], "post", "/speakers", {"kind": "filibuster"}),
        "closed": (room.delegates[2], "post", "/speakers", {"kind": "speech"}),
    }
    client, method, path, body = requests[case]
    before = await room.state()
    if method == "post":
        response = await client.post(base + path, json=body or {})
    else:
        response = await client.delete(base + path)
    assert response.status_code == status, response.text[:300]
    assert response.json()["error"]["code"] == code
    assert await room.state() == before
