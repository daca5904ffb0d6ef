"""Creating meetings, the lifecycle, and who may see what."""

from __future__ import annotations

from tests.meeting.conftest import Room


async def test_state_of_a_new_meeting(room: Room) -> None:
    state = await room.state()
    assert state["state"] == "scheduled"
    assert state["seq"] >= 1
    roles = {p["user_id"]: p["role"] for p in state["participants"]}
    assert roles[room.city.chair_id] == "chair"
    assert roles[room.guest_id] == "guest"
    assert state["quorum"] == {"rule": {"numerator": 2, "denominator": 3}, "members": 5,
                               "present": 0, "required": 4, "reached": False}
    assert state["speakers"] == {"queue": [], "current": None, "totals": []}
    assert state["presentation"] is None
    assert state["polls"] == []


async def test_lifecycle(room: Room) -> None:
    response = await room.chair.post(room.base + "/start")
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "in_session"
    assert (await room.chair.post(room.base + "/adjourn")).json()["state"] == "adjourned"
    assert (await room.chair.post(room.base + "/start")).json()["state"] == "in_session"
    assert (await room.chair.post(room.base + "/close")).json()["state"] == "closed"
    state = await room.state()
    assert state["state"] == "closed" and state["closed_at"]
