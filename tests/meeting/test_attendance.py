"""Check-in, attendance marked by officers, and the quorum."""

from __future__ import annotations

from typing import Any

from tests.meeting.conftest import Room, refused


def entry(state: dict[str, Any], user_id: int) -> dict[str, Any]:
    return next(p for p in state["participants"] if p["user_id"] == user_id)


async def test_check_in_and_quorum(room: Room) -> None:
    assert (await room.chair.post(room.base + "/start")).status_code == 200
    token = room.tokens["delegate001"]
    async with room.server.socket(token) as ws:
        seq = (await room.state(room.delegates[0]))["seq"]
        await ws.subscribe({f"meeting:{room.meeting_id}": seq})
        for client in room.delegates[:3]:
            response = await client.post(room.base + "/attendance", json={"present": True})
            assert response.status_code == 200, response.text
        events = [await ws.next_event("attendance.changed") for _ in range(3)]
        assert [e["data"]["quorum"]["present"] for e in events] == [1, 2, 3]
        assert not events[-1]["data"]["quorum"]["reached"]
        # The guest checks in but never counts.
        response = await room.guest.post(room.base + "/attendance", json={"present": True})
        assert response.status_code == 200
        assert response.json()["quorum"]["present"] == 3
        assert response.json()["participant"]["present"] is True
        response = await room.chair.post(room.base + "/attendance", json={"present": True})
        event = await ws.next_event("attendance.changed")
        event = await ws.next_event("attendance.changed")
        assert event["data"]["quorum"] == {
            "rule": {"numerator": 2, "denominator": 3, "remote_counts": True},
            "members": 5,
            "present": 4,
            "remote": 0,
            "required": 4,
            "reached": True,
        }
    state = await room.state()
    assert entry(state, room.delegate_ids[0])["checked_in_at"]
    assert state["quorum"]["reached"]


async def test_secretary_marks_absent_with_reason(room: Room) -> None:
    # Officers record attendance before the session starts too.
    response = await room.secretary.post(
        room.base + "/attendance",
        json={"present": False, "user_id": room.delegate_ids[3], "reason": "Đi công tác"},
    )
    assert response.status_code == 200, response.text
    response = await room.chair.post(
        room.base + "/attendance", json={"present": True, "user_id": room.delegate_ids[2]}
    )
    assert response.status_code == 200, response.text
    state = await room.state()
    absent = entry(state, room.delegate_ids[3])
    assert absent["present"] is False and absent["absent_reason"] == "Đi công tác"
    assert absent["marked_by"] == room.city.secretary_id
    assert entry(state, room.delegate_ids[2])["present"] is True


async def test_bad_attendance_changes_nothing(room: Room) -> None:
    d2, me = room.delegate_ids[1], room.delegates[0]
    path = "/attendance"
    # Scheduled: no self check-in yet.
    await refused(room, me, "post", path, {"present": True}, 409, "meeting_not_in_session")
    assert (await room.chair.post(room.base + "/start")).status_code == 200
    for client, body, status, code in [
        (me, {"present": True, "user_id": d2}, 403, "not_officer"),
        (room.guest, {"present": False, "user_id": d2}, 403, "not_officer"),
        (room.outsider, {"present": True}, 404, "meeting_not_found"),
        (room.chair, {"present": True, "user_id": room.outsider_id}, 422, "not_a_participant"),
        (me, {"present": False, "reason": "Ốm"}, 422, "reason_not_allowed"),
        (me, {"present": "yes"}, 400, "invalid_request"),
        (room.chair, {"present": True, "reason": "x" * 501, "user_id": d2}, 400, "invalid_request"),
    ]:
        await refused(room, client, "post", path, body, status, code)
    assert (await room.chair.post(room.base + "/adjourn")).status_code == 200
    await refused(room, me, "post", path, {"present": True}, 409, "meeting_not_in_session")
    assert (await room.chair.post(room.base + "/close")).status_code == 200
    await refused(room, me, "post", path, {"present": True}, 409, "meeting_closed")
    await refused(
        room, room.chair, "post", path, {"present": True, "user_id": d2}, 409, "meeting_closed"
    )
