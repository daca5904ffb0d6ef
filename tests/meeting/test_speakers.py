"""The list of speakers: requests, points of order, the floor, totals."""

from __future__ import annotations

from typing import Any

from tests.meeting.conftest import Room, refused


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
    assert await queue_users(room) == [
        (d[2], "point_of_order"),
        (d[3], "point_of_order"),
        (d[0], "speech"),
        (d[1], "question"),
    ]
    state = (await room.state())["speakers"]
    ids = [s["id"] for s in state["queue"]]
    response = await room.chair.post(
        room.base + "/speakers/reorder", json={"speaker_ids": [ids[2], ids[0], ids[1], ids[3]]}
    )
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


async def test_bad_speaker_requests_change_nothing(room: Room) -> None:
    assert (await room.chair.post(room.base + "/start")).status_code == 200
    a = await ask(room, 0)
    b = await ask(room, 1)
    assert (await room.chair.post(room.base + f"/speakers/{a['id']}/grant")).is_success
    d = room.delegates
    speech = {"kind": "speech"}
    for client, method, path, body, status, code in [
        (room.chair, "post", f"/speakers/{b['id']}/grant", None, 409, "floor_taken"),
        (room.chair, "post", f"/speakers/{a['id']}/grant", None, 409, "speaker_not_waiting"),
        (d[1], "post", f"/speakers/{b['id']}/grant", None, 403, "not_chair"),
        (room.secretary, "post", f"/speakers/{b['id']}/grant", None, 403, "not_chair"),
        (room.chair, "post", f"/speakers/{b['id']}/finish", None, 409, "speaker_not_speaking"),
        (d[1], "post", f"/speakers/{a['id']}/finish", None, 403, "not_chair"),
        (d[0], "delete", f"/speakers/{b['id']}", None, 403, "not_chair"),
        (d[0], "delete", f"/speakers/{a['id']}", None, 409, "speaker_not_waiting"),
        (d[1], "post", "/speakers", speech, 409, "already_requested"),
        (room.secretary, "post", "/speakers", speech, 403, "not_allowed"),
        (room.outsider, "post", "/speakers", speech, 404, "meeting_not_found"),
        (room.chair, "post", "/speakers/reorder", {"speaker_ids": []}, 422, "queue_mismatch"),
        (d[1], "post", "/speakers/reorder", {"speaker_ids": [b["id"]]}, 403, "not_chair"),
        (room.chair, "post", "/speakers/999999/grant", None, 404, "speaker_not_found"),
        (d[2], "post", "/speakers", {"kind": "filibuster"}, 400, "invalid_request"),
    ]:
        await refused(room, client, method, path, body, status, code)
    await room.chair.post(room.base + f"/speakers/{a['id']}/finish")
    assert (await room.chair.post(room.base + "/adjourn")).status_code == 200
    await refused(
        room, room.chair, "post", f"/speakers/{b['id']}/grant", None, 409, "meeting_not_in_session"
    )
    assert (await room.chair.post(room.base + "/close")).status_code == 200
    await refused(room, d[2], "post", "/speakers", speech, 409, "meeting_closed")
    await refused(room, d[1], "delete", f"/speakers/{b['id']}", None, 409, "meeting_closed")
