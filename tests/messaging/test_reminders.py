"""Chasing with an injected clock: reminders, overdue notices, escalation, two nodes."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from messaging.reminders import ReminderScheduler
from messaging.runtime import started_runtime
from server.clock import ManualClock
from server.demo import seed_demo
from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.harness import RunningServer
from tests.messaging.support import audit_actions, directive_body, events_of, issue, token

INTERVALS = {"express": 300, "very_urgent": 900, "urgent": 3600, "normal": 86400}


def scheduler(server: RunningServer) -> ReminderScheduler:
    found = started_runtime(server.ctx).reminders
    return found


async def advance(clock: ManualClock, seconds: float, *servers: RunningServer) -> None:
    """Move time and wait until every node's scheduler has looked at the new time."""
    await clock.advance(seconds)
    moment = clock.now()
    for server in servers:
        await asyncio.wait_for(scheduler(server).wait_checked(moment), 10)


async def counts(server: RunningServer, user_ids: list[int], type: str) -> dict[int, int]:
    return {uid: len(await events_of(server, f"user:{uid}", type)) for uid in user_ids}


async def test_reminders_overdue_and_escalation(make_server: MakeServer) -> None:
    clock = ManualClock()
    server = await make_server(
        clock=clock, reminder_intervals=INTERVALS, escalate_after_reminders=2
    )
    city, _ = await seed_demo(server.ctx, password=DEMO_PASSWORD, communes=4, delegates=4)
    standing = await token(server, "standing")
    due = clock.now() + timedelta(seconds=450)
    issued = await issue(
        server, standing, directive_body(city.commune_unit_ids, due_at=due.isoformat())
    )
    wards = city.ward_user_ids
    async with server.http(await token(server, "ward001")) as http:
        await http.post(f"/api/v1/directives/{issued['id']}/ack", json={})

    await advance(clock, 299, server)
    assert await counts(server, wards, "directive.reminder") == dict.fromkeys(wards, 0)

    await advance(clock, 1, server)  # t = 300: first reminder to everyone not acknowledged
    assert await counts(server, wards, "directive.reminder") == {
        wards[0]: 0,
        wards[1]: 1,
        wards[2]: 1,
        wards[3]: 1,
    }
    reminder = (await events_of(server, f"user:{wards[1]}", "directive.reminder"))[0]
    assert reminder.data["directive_id"] == issued["id"]
    assert reminder.data["reminder"] == 1
    assert await events_of(server, f"user:{city.standing_id}", "directive.overdue") == []

    async with server.http(await token(server, "ward002")) as http:
        await http.post(f"/api/v1/directives/{issued['id']}/ack", json={})

    await advance(clock, 150, server)  # t = 450: due; ward003 and ward004 are late
    overdue = await events_of(server, f"user:{city.standing_id}", "directive.overdue")
    assert len(overdue) == 1
    late_units = [u["unit_id"] for u in overdue[0].data["late_units"]]
    assert late_units == city.commune_unit_ids[2:]
    assert overdue[0].data["late"] == 2

    await advance(clock, 150, server)  # t = 600: second reminder, escalation to the heads
    assert await counts(server, wards, "directive.reminder") == {
        wards[0]: 0,
        wards[1]: 1,
        wards[2]: 2,
        wards[3]: 2,
    }
    escalations = await counts(server, wards, "directive.escalated")
    # In the demo city each ward's one staff member is also the head of the ward.
    assert escalations == {wards[0]: 0, wards[1]: 0, wards[2]: 1, wards[3]: 1}
    assert len(await audit_actions(server, "directive.escalate")) == 2

    await advance(clock, 300, server)  # t = 900: third reminder, no second escalation
    assert await counts(server, wards, "directive.escalated") == escalations
    assert (await counts(server, wards, "directive.reminder"))[wards[2]] == 3
    assert len(await events_of(server, f"user:{city.standing_id}", "directive.overdue")) == 1

    async with server.http(standing) as http:
        report: dict[str, Any] = (
            await http.get(f"/api/v1/directives/{issued['id']}/receipts")
        ).json()
    assert report["summary"]["overdue"] == 2


async def test_each_reminder_is_sent_once_with_two_nodes(make_server: MakeServer) -> None:
    clock = ManualClock()
    first = await make_server(clock=clock, reminder_intervals=INTERVALS)
    second = await make_server(clock=clock, reminder_intervals=INTERVALS)
    city, _ = await seed_demo(first.ctx, password=DEMO_PASSWORD, communes=6, delegates=4)
    standing = await token(first, "standing")
    due = clock.now() + timedelta(seconds=300)
    issued = await issue(
        first, standing, directive_body(city.commune_unit_ids, due_at=due.isoformat())
    )
    assert issued["recipient_count"] == 6
    for step in range(1, 4):
        await advance(clock, 300, first, second)
        got = await counts(first, city.ward_user_ids, "directive.reminder")
        assert got == dict.fromkeys(city.ward_user_ids, step)
    overdue = await events_of(first, f"user:{city.standing_id}", "directive.overdue")
    assert len(overdue) == 1


async def test_schedule_survives_a_restart(make_server: MakeServer) -> None:
    clock = ManualClock()
    first = await make_server(clock=clock, reminder_intervals=INTERVALS)
    city, _ = await seed_demo(first.ctx, password=DEMO_PASSWORD, communes=2, delegates=2)
    standing = await token(first, "standing")
    await issue(first, standing, directive_body(city.commune_unit_ids))
    await first.stop()
    second = await make_server(clock=clock, reminder_intervals=INTERVALS)
    await advance(clock, 300, second)
    got = await counts(second, city.ward_user_ids, "directive.reminder")
    assert got == dict.fromkeys(city.ward_user_ids, 1)
