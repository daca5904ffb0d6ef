"""The speech timer runs on the server, on the injected clock, and survives a restart."""

from __future__ import annotations

from typing import Any

from meeting.speakers import speech_timers
from server.clock import ManualClock
from server.demo import seed_demo
from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.harness import eventually
from tests.meeting.conftest import Room, login, make_room, next_on


async def room_on(make_server: MakeServer, clock: ManualClock) -> tuple[Any, Room]:
    server = await make_server(clock=clock)
    city, _ = await seed_demo(server.ctx, password=DEMO_PASSWORD, communes=2, delegates=6)
    rooms = make_room(server, city, speech_limit_secs=60)
    return rooms, await rooms.__anext__()


async def grant_first(room: Room) -> dict[str, Any]:
    assert (await room.chair.post(room.base + "/start")).status_code == 200
    response = await room.delegates[0].post(room.base + "/speakers", json={"kind": "speech"})
    assert response.status_code == 201
    speaker: dict[str, Any] = response.json()
    response = await room.chair.post(room.base + f"/speakers/{speaker['id']}/grant")
    assert response.status_code == 200, response.text
    return speaker


async def test_warning_and_time_up(make_server: MakeServer) -> None:
    clock = ManualClock()
    rooms, room = await room_on(make_server, clock)
    topic = f"meeting:{room.meeting_id}"
    try:
        async with room.server.socket(room.tokens["delegate002"]) as ws:
            await ws.subscribe({f"meeting:{room.meeting_id}": (await room.state())["seq"]})
            speaker = await grant_first(room)
            started = await ws.next_event("speaker.started")
            assert started["data"]["ends_at"] == started["data"]["speakers"]["current"]["ends_at"]
            await clock.advance(29)
            # Nothing is due yet: the next event is the one caused by the chair below.
            response = await room.chair.post(room.base + "/presenter", json={"user_id": None})
            assert response.status_code == 200
            assert (await next_on(ws, topic))["type"] == "presenter.changed"
            await clock.advance(1)
            warning = await next_on(ws, topic)
            assert warning["type"] == "speaker.warning"
            assert warning["data"]["remaining_secs"] == 30
            assert warning["data"]["user_id"] == speaker["user_id"]
            await clock.advance(30)
            time_up = await next_on(ws, topic)
            assert time_up["type"] == "speaker.time_up"
            assert time_up["data"]["speakers"]["current"]["time_up"] is True
            # Time up does not take the floor away; the chair does, and the total counts.
            await clock.advance(15)
            response = await room.chair.post(room.base + f"/speakers/{speaker['id']}/finish")
            assert response.status_code == 204
            finished = await ws.next_event("speaker.finished")
            assert finished["data"]["duration_secs"] == 75
        totals = (await room.state())["speakers"]["totals"]
        assert totals == [{"user_id": speaker["user_id"], "speeches": 1, "seconds": 75.0}]
    finally:
        await rooms.aclose()


async def test_a_finished_speech_sends_no_warning(make_server: MakeServer) -> None:
    clock = ManualClock()
    rooms, room = await room_on(make_server, clock)
    topic = f"meeting:{room.meeting_id}"
    try:
        speaker = await grant_first(room)
        response = await room.chair.post(room.base + f"/speakers/{speaker['id']}/finish")
        assert response.status_code == 204
        seq = (await room.state())["seq"]
        await clock.advance(120)
        async with room.server.socket(room.tokens["delegate002"]) as ws:
            frames = await ws.subscribe({f"meeting:{room.meeting_id}": seq})
            # Prove the server is idle for this meeting: the next event is our own.
            response = await room.chair.post(room.base + "/presenter", json={"user_id": None})
            event = await next_on(ws, topic)
        assert [f for f in frames if f["op"] == "event"] == []
        assert event["type"] == "presenter.changed"
    finally:
        await rooms.aclose()


async def test_timer_survives_a_restart(make_server: MakeServer) -> None:
    clock = ManualClock()
    rooms, room = await room_on(make_server, clock)
    topic = f"meeting:{room.meeting_id}"
    try:
        await grant_first(room)
        await clock.advance(10)
        await room.server.stop()
        # A new node over the same database rebuilds the timer from the running speech.
        second = await make_server(clock=clock)
        token = await login(second, "delegate002")
        async with second.socket(token) as ws:
            async with second.http(room.tokens["chair"]) as chair:
                seq = (await chair.get(room.base)).json()["seq"]
            await ws.subscribe({f"meeting:{room.meeting_id}": seq})
            timers = speech_timers(second.ctx)
            await eventually(
                lambda: timers.tasks, "the new node picking up the running speech", timeout=5
            )
            await clock.advance(20)
            assert (await next_on(ws, topic))["type"] == "speaker.warning"
            await clock.advance(30)
            assert (await next_on(ws, topic))["type"] == "speaker.time_up"
    finally:
        await rooms.aclose()
