"""Creating meetings, the lifecycle, and who may see what."""

from __future__ import annotations

from typing import Any

from server.demo import DemoCity
from tests.harness import RunningServer
from tests.meeting.conftest import Room, login, meeting_count, refused


async def test_state_of_a_new_meeting(room: Room) -> None:
    state = await room.state()
    assert state["state"] == "scheduled"
    assert state["seq"] >= 1
    roles = {p["user_id"]: p["role"] for p in state["participants"]}
    assert roles[room.city.chair_id] == "chair"
    assert roles[room.city.secretary_id] == "secretary"
    assert roles[room.guest_id] == "guest"
    # Members are the chair and the four delegates; guests and secretaries never count.
    assert state["quorum"] == {
        "rule": {"numerator": 2, "denominator": 3, "remote_counts": True},
        "members": 5,
        "present": 0,
        "remote": 0,
        "required": 4,
        "reached": False,
    }
    assert state["speakers"] == {"queue": [], "current": None, "totals": []}
    assert state["presentation"] is None
    assert state["polls"] == []
    assert state["you"] == {"user_id": room.city.chair_id, "role": "chair"}


async def test_lifecycle_and_audit(room: Room) -> None:
    response = await room.chair.post(room.base + "/start")
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "in_session"
    assert (await room.chair.post(room.base + "/adjourn")).json()["state"] == "adjourned"
    assert (await room.chair.post(room.base + "/start")).json()["state"] == "in_session"
    assert (await room.chair.post(room.base + "/close")).json()["state"] == "closed"
    state = await room.state()
    assert state["state"] == "closed" and state["closed_at"] and state["started_at"]
    from sqlalchemy import select

    from server.audit import AuditRecord

    async with room.server.ctx.read() as session:
        actions = (
            (
                await session.execute(
                    select(AuditRecord.action)
                    .where(AuditRecord.subject == f"meeting:{room.meeting_id}")
                    .order_by(AuditRecord.seq)
                )
            )
            .scalars()
            .all()
        )
    assert actions == [
        "meeting.create",
        "meeting.in_session",
        "meeting.adjourned",
        "meeting.in_session",
        "meeting.closed",
    ]


async def test_illegal_transitions_change_nothing(room: Room) -> None:
    await refused(room, room.chair, "post", "/adjourn", None, 409, "illegal_transition")
    assert (await room.chair.post(room.base + "/start")).status_code == 200
    await refused(room, room.chair, "post", "/start", None, 409, "illegal_transition")
    assert (await room.chair.post(room.base + "/close")).status_code == 200
    for action in ("/start", "/adjourn", "/close"):
        await refused(room, room.chair, "post", action, None, 409, "meeting_closed")


async def test_only_the_chair_runs_the_lifecycle(room: Room) -> None:
    before = await room.state()
    for client in (room.delegates[0], room.secretary, room.guest):
        response = await client.post(room.base + "/start")
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "not_chair"
    response = await room.outsider.post(room.base + "/start")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "meeting_not_found"
    assert await room.state() == before


async def test_list_and_visibility(room: Room) -> None:
    mine = (await room.delegates[0].get("/api/v1/meetings")).json()["meetings"]
    assert (room.meeting_id, "delegate") in [(m["id"], m["role"]) for m in mine]
    assert {m["title"] for m in mine} >= {"Kỳ họp thứ 12 HĐND thành phố"}
    assert (await room.outsider.get("/api/v1/meetings")).json() == {"meetings": []}
    response = await room.outsider.get(room.base)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "meeting_not_found"
    response = await room.chair.get("/api/v1/meetings/999999")
    assert response.status_code == 404


async def test_patch_meeting(room: Room) -> None:
    response = await room.secretary.patch(
        room.base,
        json={"place": "Phòng họp số 2", "speech_limit_secs": 120, "quorum": "majority_of_members"},
    )
    assert response.status_code == 200, response.text
    state = response.json()
    assert state["place"] == "Phòng họp số 2" and state["speech_limit_secs"] == 120
    assert state["quorum"]["required"] == 3
    before = await room.state()
    response = await room.delegates[0].patch(room.base, json={"place": "X"})
    assert response.status_code == 403
    response = await room.chair.patch(
        room.base, json={"quorum": {"numerator": 3, "denominator": 2}}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_quorum"
    assert await room.state() == before


BAD_MEETINGS: list[tuple[dict[str, Any], int, str]] = [
    ({"chair_ids": []}, 422, "chair_required"),
    ({"delegate_ids": "SAME_AS_CHAIR"}, 422, "duplicate_participant"),
    ({"delegate_ids": [987654]}, 422, "unknown_user"),
    ({"starts_at": "2026-11-23T08:00:00"}, 400, "invalid_request"),
    ({"title": ""}, 400, "invalid_request"),
    ({"unexpected": 1}, 400, "invalid_request"),
    ({"quorum": "most_of_them"}, 400, "invalid_request"),
    ({"speech_limit_secs": 1}, 400, "invalid_request"),
]


async def test_bad_meetings_store_nothing(server: RunningServer, city: DemoCity) -> None:
    token = await login(server, "chair")
    before = await meeting_count(server)
    async with server.http(token) as client:
        for change, status, code in BAD_MEETINGS:
            body: dict[str, Any] = {
                "title": "Họp",
                "starts_at": "2026-11-23T08:00:00+07:00",
                "chair_ids": [city.chair_id],
                "delegate_ids": city.delegate_ids[:3],
            }
            body.update(change)
            if body["delegate_ids"] == "SAME_AS_CHAIR":
                body["delegate_ids"] = [city.chair_id]
            response = await client.post("/api/v1/meetings", json=body)
            assert response.status_code == status, (change, response.text[:300])
            assert response.json()["error"]["code"] == code, change
    assert await meeting_count(server) == before


async def test_a_delegate_cannot_schedule_a_meeting(server: RunningServer, city: DemoCity) -> None:
    token = await login(server, "delegate001")
    before = await meeting_count(server)
    async with server.http(token) as client:
        response = await client.post(
            "/api/v1/meetings",
            json={
                "title": "Họp",
                "starts_at": "2026-11-23T08:00:00+07:00",
                "chair_ids": [city.delegate_ids[0]],
                "delegate_ids": city.delegate_ids[1:3],
            },
        )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "not_organiser"
    assert await meeting_count(server) == before


async def test_only_participants_follow_the_meeting(room: Room) -> None:
    topic = f"meeting:{room.meeting_id}"
    async with room.server.socket(room.tokens["outsider"]) as ws:
        frames = await ws.subscribe({topic: 0})
    assert frames[-1]["op"] == "error" and frames[-1]["code"] == "forbidden"
    assert not [f for f in frames if f["op"] == "event" and f["topic"] == topic]
    for name in ("guest", "secretary", "delegate001"):
        async with room.server.socket(room.tokens[name]) as ws:
            frames = await ws.subscribe({topic: 0})
        assert frames[-1]["op"] == "subscribed", (name, frames[-1])
        ours = [f for f in frames if f["op"] == "event" and f["topic"] == topic]
        assert ours[0]["type"] == "meeting.created"


async def test_what_has_legal_weight_is_audited(room: Room) -> None:
    from sqlalchemy import select

    from server.audit import AuditRecord, verify_chain
    from tests.meeting.conftest import store_pdf

    doc = await store_pdf(room.server, room.city.chair_id, "Tờ trình", pages=2)
    item = (
        await room.chair.post(
            room.base + "/agenda", json={"title": "Tờ trình", "document_ids": [doc]}
        )
    ).json()
    assert (await room.chair.post(room.base + "/start")).status_code == 200
    assert (
        await room.delegates[0].post(room.base + "/attendance", json={"present": True})
    ).status_code == 200
    assert (
        await room.chair.post(
            room.base + "/presentation",
            json={"agenda_item_id": item["id"], "document_id": doc, "page": 2},
        )
    ).status_code == 200
    speaker = (await room.delegates[0].post(room.base + "/speakers", json={})).json()
    assert (await room.chair.post(room.base + f"/speakers/{speaker['id']}/grant")).is_success
    assert (await room.chair.post(room.base + f"/speakers/{speaker['id']}/finish")).is_success
    async with room.server.ctx.read() as session:
        rows = (
            (
                await session.execute(
                    select(AuditRecord)
                    .where(AuditRecord.subject == f"meeting:{room.meeting_id}")
                    .order_by(AuditRecord.seq)
                )
            )
            .scalars()
            .all()
        )
        report = await verify_chain(session)
    assert report.ok
    by_action = {row.action: row for row in rows}
    assert by_action["meeting.attendance"].actor_id == room.delegate_ids[0]
    assert by_action["meeting.attendance"].details["present"] is True
    assert by_action["meeting.present"].details == {
        "agenda_item_id": item["id"],
        "document_id": doc,
        "page": 2,
    }
    assert by_action["meeting.present"].actor_id == room.city.chair_id
    finish = by_action["meeting.speaker.finish"].details
    assert finish["user_id"] == room.delegate_ids[0]
    assert finish["granted_at"] and finish["finished_at"] and finish["duration_secs"] >= 0
    assert {
        "meeting.create",
        "meeting.agenda.add",
        "meeting.in_session",
        "meeting.speaker.request",
        "meeting.speaker.grant",
    } <= set(by_action)


async def test_participants_change(room: Room) -> None:
    path = f"{room.base}/participants/{room.outsider_id}"
    response = await room.secretary.put(path, json={"role": "delegate"})
    assert response.status_code == 200, response.text[:300]
    assert response.json()["quorum"]["members"] == 6
    # The newcomer now sees the meeting; a delegate demoted to guest no longer counts.
    assert (await room.outsider.get(room.base)).status_code == 200
    response = await room.chair.put(path, json={"role": "guest"})
    assert response.json()["quorum"]["members"] == 5
    assert (await room.chair.delete(path)).status_code == 204
    assert (await room.outsider.get(room.base)).status_code == 404
    chair_path = f"/participants/{room.city.chair_id}"
    for client, method, where, body, status, code in [
        (
            room.delegates[0],
            "put",
            f"/participants/{room.outsider_id}",
            {"role": "guest"},
            403,
            "not_officer",
        ),
        (room.chair, "put", "/participants/987654", {"role": "guest"}, 422, "unknown_user"),
        (
            room.chair,
            "put",
            f"/participants/{room.outsider_id}",
            {"role": "boss"},
            400,
            "invalid_request",
        ),
        (
            room.chair,
            "delete",
            f"/participants/{room.outsider_id}",
            None,
            404,
            "participant_not_found",
        ),
        (room.secretary, "delete", chair_path, None, 422, "chair_required"),
        (room.secretary, "put", chair_path, {"role": "delegate"}, 422, "chair_required"),
    ]:
        before = await room.state()
        url = room.base + where
        response = await (client.put(url, json=body) if method == "put" else client.delete(url))
        assert response.status_code == status, (where, response.text[:300])
        assert response.json()["error"]["code"] == code
        assert await room.state() == before
