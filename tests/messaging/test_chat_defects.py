"""Small defects of the chat: the commune hears that its instruction is overdue; the dots of
direct conversations come from the people's presence; the read position is the last message
read, not the one before."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from messaging.runtime import started_runtime
from server.clock import ManualClock
from server.demo import DemoCity, seed_demo
from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.harness import RunningServer
from tests.messaging.support import directive_body, events_of, issue, token


async def test_late_recipients_get_an_overdue_notice(make_server: MakeServer) -> None:
    clock = ManualClock()
    server = await make_server(clock=clock)
    city, _ = await seed_demo(server.ctx, password=DEMO_PASSWORD, communes=3, delegates=2)
    standing = await token(server, "standing")
    due = clock.now() + timedelta(seconds=600)
    issued = await issue(
        server,
        standing,
        directive_body(
            city.commune_unit_ids, title="Báo cáo số hộ đã sơ tán", due_at=due.isoformat()
        ),
    )
    async with server.http(await token(server, "ward001")) as http:
        assert (
            await http.post(f"/api/v1/directives/{issued['id']}/ack", json={})
        ).status_code == 200
    late = city.ward_user_ids[1:]
    async with server.socket(await token(server, "ward002")) as client:
        await clock.advance(600)
        scheduler = started_runtime(server.ctx).reminders
        await asyncio.wait_for(scheduler.wait_checked(clock.now()), 10)
        live = await client.next_event("directive.overdue")
    assert live["topic"] == f"user:{late[0]}"
    assert live["data"] == {
        "directive_id": issued["id"],
        "urgency": "express",
        "due_at": live["data"]["due_at"],
        "title": "Báo cáo số hộ đã sơ tán",
        "confidentiality": "none",
    }
    for user_id in late:
        assert len(await events_of(server, f"user:{user_id}", "directive.overdue")) == 1
    # Whoever acknowledged in time is not told.
    assert await events_of(server, f"user:{city.ward_user_ids[0]}", "directive.overdue") == []
    assert len(await events_of(server, f"user:{city.standing_id}", "directive.overdue")) == 1


async def test_presence_of_the_people_one_talks_to(server: RunningServer, city: DemoCity) -> None:
    one = await token(server, "ward001")
    async with server.http(one) as http:
        created = await http.post(
            "/api/v1/channels", json={"kind": "direct", "member_ids": [city.ward_user_ids[2]]}
        )
        assert created.status_code == 201, created.text
    partner = city.ward_user_ids[2]
    url = f"/api/v1/presence?user_ids={partner}"
    async with server.http(one) as http:
        assert (await http.get(url)).json() == {"users": [{"user_id": partner, "state": "offline"}]}
        async with server.socket(await token(server, "ward003")):
            online = (await http.get(url)).json()
        assert online == {"users": [{"user_id": partner, "state": "online"}]}
        # Someone the user shares no conversation with: refused, and said why.
        stranger = await http.get(f"/api/v1/presence?user_ids={partner},{city.ward_user_ids[4]}")
        assert stranger.status_code == 403
        assert stranger.json()["error"]["code"] == "not_a_contact"
        assert stranger.json()["error"]["details"] == {"user_ids": [city.ward_user_ids[4]]}
        for bad in ("1,abc", "0", "-3", str(2**63), "9" * 5000):
            malformed = await http.get(f"/api/v1/presence?user_ids={bad}")
            assert malformed.status_code == 400, bad
            assert malformed.json()["error"]["code"] == "invalid_request"
        assert (await http.get("/api/v1/presence")).json() == {"users": []}
