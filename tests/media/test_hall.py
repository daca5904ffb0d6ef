"""The hall's sound desk on the floor: always heard, mix-minus for everyone, its camera
shown when the speaker sends none, and who may connect it."""

from __future__ import annotations

import asyncio

from meeting.media.service import runtime as media_runtime
from tests.conftest import DEMO_PASSWORD
from tests.media.conftest import Hall
from tests.media.peers import Client, Signal
from tests.media.test_floor_api import signal_through

HALL_HZ = 500.0
A_HZ = 1200.0
VIEWER_HZ = 800.0
GREEN = (30, 200, 30)
RED = (220, 30, 30)


def join_as(hall: Hall, token: str, kind: str, sessions: dict[str, str], name: str) -> Signal:
    return signal_through(hall, token, sessions, name, kind)


async def test_the_hall_is_heard_and_nobody_hears_themself(hall: Hall) -> None:
    desk, a, b = Client(HALL_HZ), Client(A_HZ), Client(None)
    sessions: dict[str, str] = {}
    async with hall.server.socket(hall.chair) as ws:
        await ws.subscribe({hall.topic: 0})
        try:
            await desk.join(join_as(hall, hall.chair, "hall", sessions, "desk"))
            joined = await ws.next_event("media.joined")
            assert joined["data"]["kind"] == "hall"
            assert joined["data"]["user_id"] == hall.city.chair_id
            # A remote delegate with nobody else joined hears the hall's sound.
            await b.join(join_as(hall, hall.delegates[1], "participant", sessions, "b"))
            await b.wait_hearing(HALL_HZ)
            # The desk never hears itself: the floor minus the hall is silence.
            await desk.wait_frames(30)
            assert desk.rms() < 50, desk.rms()

            await a.join(join_as(hall, hall.delegates[0], "participant", sessions, "a"))
            # Not on the floor yet: A hears the hall; B does not hear A.
            await a.wait_hearing(HALL_HZ)
            await b.wait_hearing(HALL_HZ, absent=(A_HZ,))
            await hall.give_floor(hall.delegates[0])
            # The floor is the hall plus the remote speaker, each minus themself.
            await desk.wait_hearing(A_HZ, absent=(HALL_HZ,))
            await a.wait_hearing(HALL_HZ, absent=(A_HZ,))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while not (b.level_at(A_HZ) > 0.3 and b.level_at(HALL_HZ) > 0.3):
                assert loop.time() < deadline, (b.level_at(A_HZ), b.level_at(HALL_HZ))
                await asyncio.sleep(0.05)
            # Three distinct mixes, encoded once each per tick, whoever listens.
            engine = media_runtime(hall.server.ctx).engine
            stats = await engine.room_stats(hall.meeting_id)
            assert stats["mixes"] == 3 and stats["listeners"] == 3
        finally:
            for client in (desk, a, b):
                await client.close()


async def test_the_projector_sees_the_hall_camera_then_the_speaker(hall: Hall) -> None:
    desk = Client(HALL_HZ, color=GREEN)
    speaker = Client(A_HZ, color=RED)
    projector = Client(VIEWER_HZ, watch=True)  # a viewer's microphone is never mixed in
    listener = Client(None)
    sessions: dict[str, str] = {}
    try:
        await desk.join(join_as(hall, hall.chair, "hall", sessions, "desk"))
        await projector.join(join_as(hall, hall.chair, "viewer", sessions, "projector"))
        await listener.join(join_as(hall, hall.delegates[1], "participant", sessions, "b"))
        await projector.wait_seeing(GREEN)
        await listener.wait_hearing(HALL_HZ, absent=(VIEWER_HZ,))
        await speaker.join(join_as(hall, hall.delegates[0], "participant", sessions, "a"))
        await hall.give_floor(hall.delegates[0])
        await projector.wait_seeing(RED)
        await desk.wait_seeing(RED)
        await listener.wait_hearing(A_HZ, absent=(VIEWER_HZ,))
        # The speaker's tablet is not sent its own camera back (it shows its preview).
        frames = speaker.video_frames
        await asyncio.sleep(0.5)
        assert speaker.seen_color != RED and speaker.video_frames - frames < 3
    finally:
        for client in (desk, speaker, projector, listener):
            await client.close()


async def test_who_may_connect_the_hall(hall: Hall) -> None:
    desk, other = Client(HALL_HZ), Client(HALL_HZ)
    sessions: dict[str, str] = {}
    try:
        other.pc.addTrack(other.tone)  # type: ignore[arg-type]
        await other.pc.setLocalDescription(await other.pc.createOffer())
        offer = other.pc.localDescription.sdp
        before = await hall.stored()
        for token, kind, status, code in (
            (hall.delegates[0], "hall", 403, "not_officer"),
            (hall.outsider, "hall", 403, "not_a_participant"),
            (hall.outsider, "viewer", 403, "not_a_participant"),
            (hall.chair, "desk", 400, "invalid_request"),
            (hall.chair, None, 400, "invalid_request"),
        ):
            answer = await hall.post(token, "/media", {"sdp": offer, "type": "offer", "kind": kind})
            assert answer.status_code == status, (kind, answer.text)
            assert answer.json()["error"]["code"] == code
        assert await hall.stored() == before

        await desk.join(join_as(hall, hall.chair, "hall", sessions, "desk"))
        # One hall per meeting: a second desk is refused, the first goes on.
        before = await hall.stored()
        admin = await hall.server.login("admin", DEMO_PASSWORD)
        second = await hall.post(admin, "/media", {"sdp": offer, "type": "offer", "kind": "hall"})
        assert second.status_code == 409, second.text
        assert second.json()["error"]["code"] == "media_hall_connected"
        assert await hall.stored() == before
        engine = media_runtime(hall.server.ctx).engine
        assert [p.kind for p in await engine.peers(hall.meeting_id)] == ["hall"]

        # Gone, the hall may be connected again: by an administrator, no participant.
        async with hall.server.http(hall.chair) as http:
            left = await http.delete(f"/api/v1/meetings/{hall.meeting_id}/media/{sessions['desk']}")
        assert left.status_code == 204, left.text
        await other.pc.close()
        other = Client(HALL_HZ)
        await other.join(join_as(hall, admin, "hall", sessions, "admin"))
    finally:
        await desk.close()
        await other.close()


async def test_a_projector_alone_records_nothing(hall: Hall) -> None:
    projector, delegate = Client(None, watch=True), Client(A_HZ)
    sessions: dict[str, str] = {}

    async def recordings() -> list[dict[str, object]]:
        async with hall.server.http(hall.chair) as http:
            listed = await http.get(f"/api/v1/meetings/{hall.meeting_id}/recordings")
        assert listed.status_code == 200, listed.text
        return list(listed.json()["recordings"])

    try:
        await projector.join(join_as(hall, hall.chair, "viewer", sessions, "projector"))
        await projector.wait_frames(10)
        assert await recordings() == []
        # A remote delegate joins: the sitting is recorded from now on...
        await delegate.join(join_as(hall, hall.delegates[0], "participant", sessions, "a"))
        await hall.give_floor(hall.delegates[0])
        await projector.wait_hearing(A_HZ)
        assert [r["ended_at"] for r in await recordings()] == [None]
        # ...until the last one who is not a viewer leaves, the projector still watching.
        async with hall.server.http(hall.delegates[0]) as http:
            left = await http.delete(f"/api/v1/meetings/{hall.meeting_id}/media/{sessions['a']}")
        assert left.status_code == 204, left.text
        for _ in range(100):
            listed = await recordings()
            if listed[0]["ended_at"]:
                break
            await asyncio.sleep(0.1)
        assert len(listed) == 1 and listed[0]["ended_at"], listed
        assert float(listed[0]["duration_secs"]) > 0.2  # type: ignore[arg-type]
        engine = media_runtime(hall.server.ctx).engine
        assert [p.kind for p in await engine.peers(hall.meeting_id)] == ["viewer"]
    finally:
        await projector.close()
        await delegate.close()
