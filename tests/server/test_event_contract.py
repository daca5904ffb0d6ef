"""Events as a contract: declared types are checked when emitted and published at
``/api/v1/ws/events.json``; the demo city and the messaging flows emit only declared
types, as declared (the meeting, poll and speaker suites run every meeting type through
the check in ``Write.emit``)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from messaging.events import EVENT_TYPES
from server.demo import DemoCity
from server.realtime.contract import (
    CORE_EVENT_TYPES,
    EventContractError,
    EventRegistry,
    EventType,
)
from server.realtime.models import EventRecord
from tests.harness import RunningServer
from tests.messaging.support import directive_body, issue, token

NOTE = EventType(
    "note.added", "unit", "A note.", {"text": "string", "count": "integer"}, {"by": "integer|null"}
)


def test_a_declared_type_checks_topic_fields_and_types() -> None:
    NOTE.check("unit:4", {"text": "a", "count": 2, "extra": [1]})
    NOTE.check("unit:4", {"text": "a", "count": 2, "by": None})
    for topic, data in (
        ("user:4", {"text": "a", "count": 2}),  # another topic kind
        ("unit:4", {"text": "a"}),  # a field missing
        ("unit:4", {"text": 1, "count": 2}),  # a field of another type
        ("unit:4", {"text": "a", "count": True}),  # a boolean is no integer
        ("unit:4", {"text": "a", "count": 2, "by": "x"}),  # an optional field mistyped
    ):
        with pytest.raises(EventContractError):
            NOTE.check(topic, data)
    with pytest.raises(ValueError):
        EventRegistry([NOTE, NOTE])
    with pytest.raises(ValueError):
        EventRegistry([EventType("bad.type", "unit", "", {"x": "text"})])


async def test_a_broken_event_is_refused_and_nothing_is_stored(server: RunningServer) -> None:
    async def stored() -> int:
        async with server.ctx.read() as session:
            return int(
                (await session.execute(select(func.count()).select_from(EventRecord))).scalar_one()
            )

    before = await stored()
    with pytest.raises(EventContractError):
        async with server.ctx.write() as w:
            await w.emit("channel:1", "message.posted", {"text": "no message object"})
    with pytest.raises(EventContractError):
        async with server.ctx.write() as w:
            await w.emit_many(["user:1", "user:2"], "directive.issued", {"directive": "x"})
    assert await stored() == before


async def test_messaging_emits_only_declared_types_and_the_description_lists_them(
    server: RunningServer, city: DemoCity
) -> None:
    standing = await token(server, "standing")
    ward = await token(server, "ward001")
    sent = await issue(server, standing, directive_body(city.commune_unit_ids[:1]))
    async with server.http(ward) as http:
        assert (
            await http.post(f"/api/v1/directives/{sent['id']}/replies", json={"body": "Đã nhận"})
        ).status_code == 201
        direct = (
            await http.post(
                "/api/v1/channels", json={"kind": "direct", "member_ids": [city.standing_id]}
            )
        ).json()
        base = f"/api/v1/channels/{direct['id']}/messages"
        posted = (await http.post(base, json={"body": "a", "client_msg_id": "1"})).json()
        assert (await http.patch(f"{base}/{posted['id']}", json={"body": "b"})).is_success
        assert (await http.delete(f"{base}/{posted['id']}")).is_success
    async with server.http(await token(server, "admin")) as http:
        assert (
            await http.patch(
                f"/api/v1/users/{city.ward_user_ids[0]}", json={"display_name": "Cán bộ"}
            )
        ).is_success
        description = await http.get("/api/v1/ws/events.json")
    registry = server.ctx.event_types
    async with server.ctx.read() as session:
        events = (await session.execute(select(EventRecord))).scalars().all()
    emitted = {e.type for e in events}
    ours = {t.name for t in (*EVENT_TYPES, *CORE_EVENT_TYPES)}
    assert emitted & ours >= {
        "directive.issued",
        "directive.reply",
        "channel.created",
        "channel.added",
        "message.posted",
        "message.edited",
        "message.retracted",
        "user.updated",
    }
    # Every type emitted here (the demo meeting's too) is declared, and as declared.
    for event in events:
        assert event.type in registry, event.type
        registry.check(event.topic, event.type, event.data)
    assert description.status_code == 200
    published = description.json()["events"]
    assert set(published) == {t.name for t in registry}
    assert published["directive.issued"]["topic"] == "user:{id}"
    assert published["directive.issued"]["data"]["required"] == ["directive"]
