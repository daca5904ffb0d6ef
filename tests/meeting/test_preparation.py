"""Preparing a meeting: finding participants, publishing the agenda, copying a meeting."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from meeting.models import Meeting
from server.audit import AuditRecord
from server.demo import DemoCity, seed_demo
from server.realtime.models import EventRecord
from tests.conftest import DEMO_PASSWORD
from tests.harness import RunningServer


async def demo_meeting(server: RunningServer, token: str) -> dict:
    async with server.http(token) as client:
        listed = (await client.get("/api/v1/meetings")).json()
    meetings = listed["meetings"] if isinstance(listed, dict) else listed
    return meetings[0]


async def test_candidates_by_role_unit_and_name(server: RunningServer, city: DemoCity) -> None:
    token = await server.login("secretary", DEMO_PASSWORD)
    async with server.http(token) as client:
        delegates = (
            await client.get("/api/v1/meeting-candidates", params={"role": "delegate"})
        ).json()
        assert delegates["total"] == 10
        assert set(delegates["users"][0]) == {"id", "display_name", "title", "unit_id", "roles"}
        below_root = (
            await client.get("/api/v1/meeting-candidates", params={"unit_id": city.root_unit_id})
        ).json()
        assert below_root["total"] == 19
        ward = (
            await client.get(
                "/api/v1/meeting-candidates", params={"unit_id": city.commune_unit_ids[0]}
            )
        ).json()
        assert [u["id"] for u in ward["users"]] == [city.ward_user_ids[0]]
        for params in ({"role": "king"}, {"unit_id": "x"}, {"q": "x" * 201}):
            assert (
                await client.get("/api/v1/meeting-candidates", params=params)
            ).status_code == 400


@pytest.mark.parametrize("who", ["delegate001", "ward001"])
async def test_delegates_and_clerks_cannot_prepare(
    server: RunningServer, city: DemoCity, who: str
) -> None:
    secretary = await server.login("secretary", DEMO_PASSWORD)
    meeting = await demo_meeting(server, secretary)
    async with server.ctx.read() as session:
        meetings_before = (
            await session.execute(select(func.count()).select_from(Meeting))
        ).scalar_one()
        events_before = (
            await session.execute(select(func.count()).select_from(EventRecord))
        ).scalar_one()
    token = await server.login(who, DEMO_PASSWORD)
    async with server.http(token) as client:
        answers = [
            await client.get("/api/v1/meeting-candidates"),
            await client.post(f"/api/v1/meetings/{meeting['id']}/publish"),
            await client.post(f"/api/v1/meetings/{meeting['id']}/preload"),
            await client.post(
                f"/api/v1/meetings/{meeting['id']}/copy",
                json={"title": "Bản sao", "starts_at": "2026-12-01T08:00:00+07:00"},
            ),
        ]
    assert answers[0].status_code == 403
    assert all(a.status_code in (403, 404) for a in answers), [a.text for a in answers]
    async with server.ctx.read() as session:
        assert (
            await session.execute(select(func.count()).select_from(Meeting))
        ).scalar_one() == meetings_before
        assert (
            await session.execute(select(func.count()).select_from(EventRecord))
        ).scalar_one() == events_before


async def test_publishing_tells_every_participant(server: RunningServer, city: DemoCity) -> None:
    secretary = await server.login("secretary", DEMO_PASSWORD)
    meeting = await demo_meeting(server, secretary)
    delegate = await server.login("delegate003", DEMO_PASSWORD)
    async with server.socket(delegate) as ws:
        async with server.http(secretary) as client:
            published = await client.post(f"/api/v1/meetings/{meeting['id']}/publish")
        assert published.status_code == 200, published.text
        assert published.json()["participants"] == 2 + len(city.delegate_ids)
        notice = await ws.next_event("meeting.agenda_published")
    assert notice["data"]["meeting_id"] == meeting["id"]
    assert notice["data"]["items"] >= 6
    async with server.ctx.read() as session:
        on_topic = (
            await session.execute(
                select(func.count())
                .select_from(EventRecord)
                .where(
                    EventRecord.topic == f"meeting:{meeting['id']}",
                    EventRecord.type == "agenda.published",
                )
            )
        ).scalar_one()
    assert on_topic == 1


async def test_tablets_download_on_publishing_and_on_later_changes(
    server: RunningServer, city: DemoCity
) -> None:
    secretary = await server.login("secretary", DEMO_PASSWORD)
    meeting = await demo_meeting(server, secretary)
    path = f"/api/v1/meetings/{meeting['id']}"
    delegate = await server.login("delegate003", DEMO_PASSWORD)
    async with server.socket(delegate) as ws, server.http(secretary) as client:
        state = (await client.get(path)).json()
        first = state["agenda"][0]
        # Before publishing, editing the agenda asks nothing of the tablets.
        edited = await client.patch(
            f"{path}/agenda/{first['id']}", json={"document_ids": first["document_ids"]}
        )
        assert edited.status_code == 200, edited.text
        assert (await client.post(f"{path}/publish")).status_code == 200
        asked = await ws.next_event("meeting.preload_requested")
        assert asked["topic"] == f"user:{city.delegate_ids[2]}"
        assert asked["data"] == {"meeting_id": meeting["id"], "reason": "published"}
        # Once published, a change of the documents asks again; a new title does not.
        renamed = await client.patch(f"{path}/agenda/{first['id']}", json={"title": "Khai mạc"})
        assert renamed.status_code == 200, renamed.text
        edited = await client.patch(
            f"{path}/agenda/{first['id']}", json={"document_ids": first["document_ids"]}
        )
        assert edited.status_code == 200, edited.text
        asked = await ws.next_event("meeting.preload_requested")
        assert asked["data"]["reason"] == "agenda_changed"
        # The secretary's "download for every delegate", audited.
        again = await client.post(f"{path}/preload")
        assert again.status_code == 200, again.text
        assert again.json() == {"participants": 2 + len(city.delegate_ids)}
        asked = await ws.next_event("meeting.preload_requested")
        assert asked["data"]["reason"] == "requested"
    async with server.ctx.read() as session:
        reasons = (
            (
                await session.execute(
                    select(EventRecord.data)
                    .where(
                        EventRecord.topic == f"user:{city.delegate_ids[2]}",
                        EventRecord.type == "meeting.preload_requested",
                    )
                    .order_by(EventRecord.seq)
                )
            )
            .scalars()
            .all()
        )
        audited = (
            (
                await session.execute(
                    select(AuditRecord.details).where(
                        AuditRecord.action == "meeting.preload.request"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert [r["reason"] for r in reasons] == ["published", "agenda_changed", "requested"]
    assert audited == [{"participants": 2 + len(city.delegate_ids)}]


async def test_publishing_without_preload_asks_nothing(make_server: Any) -> None:
    server = await make_server(preload_on_publish=False)
    await seed_demo(server.ctx, password=DEMO_PASSWORD, communes=2, delegates=3)
    secretary = await server.login("secretary", DEMO_PASSWORD)
    meeting = await demo_meeting(server, secretary)
    async with server.http(secretary) as client:
        assert (await client.post(f"/api/v1/meetings/{meeting['id']}/publish")).status_code == 200
        # The explicit action still works with the setting off.
        assert (await client.post(f"/api/v1/meetings/{meeting['id']}/preload")).status_code == 200
    async with server.ctx.read() as session:
        reasons = (
            (
                await session.execute(
                    select(EventRecord.data).where(EventRecord.type == "meeting.preload_requested")
                )
            )
            .scalars()
            .all()
        )
    assert {r["reason"] for r in reasons} == {"requested"}


async def test_copy_keeps_people_agenda_and_prepared_polls(
    server: RunningServer, city: DemoCity
) -> None:
    secretary = await server.login("secretary", DEMO_PASSWORD)
    meeting = await demo_meeting(server, secretary)
    async with server.http(secretary) as client:
        source = (await client.get(f"/api/v1/meetings/{meeting['id']}")).json()
        first_item = source["agenda"][1]
        made = await client.post(
            f"/api/v1/meetings/{meeting['id']}/polls",
            json={
                "title": "Thông qua nghị quyết",
                "kind": "yes_no_abstain",
                "rule": "majority_of_members",
                "secret": True,
                "agenda_item_id": first_item["id"],
            },
        )
        assert made.status_code == 201, made.text
        copied = await client.post(
            f"/api/v1/meetings/{meeting['id']}/copy",
            json={"title": "Kỳ họp thứ mười ba", "starts_at": "2027-06-01T08:00:00+07:00"},
        )
        assert copied.status_code == 201, copied.text
        bad = await client.post(
            f"/api/v1/meetings/{meeting['id']}/copy",
            json={"title": "", "starts_at": "2027-06-01T08:00:00"},
        )
        assert bad.status_code == 400
    state = copied.json()
    assert state["id"] != meeting["id"] and state["state"] == "scheduled"
    assert state["title"] == "Kỳ họp thứ mười ba"

    def shape(tree: list[dict]) -> list:
        return [
            (n["title"], n["planned_minutes"], n["document_ids"], shape(n["children"]))
            for n in tree
        ]

    assert shape(state["agenda"]) == shape(source["agenda"])
    assert sorted((p["user_id"], p["role"]) for p in state["participants"]) == sorted(
        (p["user_id"], p["role"]) for p in source["participants"]
    )
    [poll] = state["polls"]
    assert poll["state"] == "draft" and poll["secret"] is True
    assert poll["agenda_item_id"] == state["agenda"][1]["id"]
