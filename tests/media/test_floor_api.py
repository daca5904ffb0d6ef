"""Remote attendance end to end: aiortc clients on loopback join through the meeting API,
the chair gives the floor, everyone hears whoever holds it (checked by the tone's
frequency), and only them."""

from __future__ import annotations

import asyncio
import io

import av
import numpy as np
import pytest
from pypdf import PdfReader

from meeting.media.service import runtime as media_runtime
from tests.conftest import MakeServer
from tests.media.conftest import Hall, open_hall
from tests.media.peers import Client, Signal

A_HZ = 440.0
C_HZ = 1000.0


def signal_through(
    hall: Hall, token: str, sessions: dict[str, str], name: str, kind: str | None = None
) -> Signal:
    """Posts the offer (as ``kind`` when given), checks the answer, keeps its session."""

    async def signal(sdp: str) -> str:
        body = {"sdp": sdp, "type": "offer"} | ({"kind": kind} if kind else {})
        answer = await hall.post(token, "/media", body)
        assert answer.status_code == 201, answer.text
        body = answer.json()
        assert body["type"] == "answer" and body["session_id"]
        assert "a=candidate" in body["sdp"] and "127.0.0.1" in body["sdp"]
        sessions[name] = body["session_id"]
        return str(body["sdp"])

    return signal


async def test_the_floor_moves_and_everyone_hears_it(hall: Hall) -> None:
    a, b, c = Client(A_HZ), Client(None), Client(C_HZ)
    sessions: dict[str, str] = {}
    async with hall.server.socket(hall.chair) as ws:
        await ws.subscribe({hall.topic: 0})
        try:
            for name, client, token in (
                ("a", a, hall.delegates[0]),
                ("b", b, hall.delegates[1]),
                ("c", c, hall.delegates[2]),
            ):
                await client.join(signal_through(hall, token, sessions, name))
                joined = await ws.next_event("media.joined")
                assert joined["data"]["session_id"] == sessions[name]
            # Only the host candidate we announce is offered: loopback.
            assert b.pc.remoteDescription is not None
            for line in b.pc.remoteDescription.sdp.splitlines():
                if line.startswith("a=candidate"):
                    assert " 127.0.0.1 " in line, line

            # Nobody holds the floor: the listener hears silence, not A or C.
            await b.wait_frames(30)
            assert b.rms() < 50

            speaker_a = await hall.give_floor(hall.delegates[0])
            await b.wait_hearing(A_HZ, absent=(C_HZ,))
            # C hears A; A does not hear itself (mix-minus): with nobody else on the
            # floor, silence.
            await c.wait_hearing(A_HZ, absent=(C_HZ,))
            assert a.rms() < 50, a.rms()

            finished = await hall.post(hall.chair, f"/speakers/{speaker_a}/finish")
            assert finished.status_code in (200, 204), finished.text
            await hall.give_floor(hall.delegates[2])
            await b.wait_hearing(C_HZ, absent=(A_HZ,))
            await a.wait_hearing(C_HZ, absent=(A_HZ,))

            # B leaves: media.left, and its session is gone.
            async with hall.server.http(hall.delegates[1]) as http:
                left = await http.delete(
                    f"/api/v1/meetings/{hall.meeting_id}/media/{sessions['b']}"
                )
                assert left.status_code == 204, left.text
                again = await http.delete(
                    f"/api/v1/meetings/{hall.meeting_id}/media/{sessions['b']}"
                )
                assert again.status_code == 404
                assert again.json()["error"]["code"] == "media_session_not_found"
            event = await ws.next_event("media.left")
            assert event["data"] == {
                "session_id": sessions["b"],
                "user_id": hall.delegate_ids[1],
                "reason": "left",
            }
        finally:
            for client in (a, b, c):
                await client.close()
        # The last peers going closes the sitting: its recording is finished and listed.
        gone = {
            (await ws.next_event("media.left", timeout=10))["data"]["session_id"] for _ in range(2)
        }
        assert gone == {sessions["a"], sessions["c"]}

    recordings: list[dict[str, object]] = []
    for _ in range(100):
        async with hall.server.http(hall.delegates[3]) as http:
            listed = await http.get(f"/api/v1/meetings/{hall.meeting_id}/recordings")
        assert listed.status_code == 200, listed.text
        recordings = listed.json()["recordings"]
        if recordings and recordings[0]["ended_at"]:
            break
        await asyncio.sleep(0.1)
    assert len(recordings) == 1 and recordings[0]["ended_at"]
    async with hall.server.http(hall.delegates[3]) as http:
        ogg = await http.get(str(recordings[0]["url"]))
    assert ogg.status_code == 200
    assert ogg.headers["content-type"] == "audio/ogg"
    # The recording holds the floor: both tones, each in its turn.
    with av.open(io.BytesIO(ogg.content), "r") as container:
        # Decoded as planar float: row 0 is the left channel.
        samples = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
    spectrum = np.abs(np.fft.rfft(samples))
    freqs = np.fft.rfftfreq(samples.size, 1 / 48_000)
    for tone in (A_HZ, C_HZ):
        band = (freqs > tone - 10) & (freqs < tone + 10)
        assert spectrum[band].max() > 0.1 * spectrum.max(), tone
    # The minutes list the recording of the sitting.
    async with hall.server.http(hall.chair) as http:
        minutes = await http.get(f"/api/v1/meetings/{hall.meeting_id}/minutes.pdf")
    assert minutes.status_code == 200, minutes.text
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(minutes.content)).pages)
    assert "BẢN GHI ÂM PHIÊN HỌP TRỰC TUYẾN" in text
    # ... with the page a signed-in reader opens, never the API path (401 in a browser).
    page = f"/app/recording/#meeting/{hall.meeting_id}/{recordings[0]['id']}"
    assert recordings[0]["page"] == page
    assert page in text.replace("\n", "")
    assert str(recordings[0]["url"]) not in text.replace("\n", "")
    # Who attended remotely: the three delegates who joined.
    assert "Tham dự trực tuyến:" in text


async def test_refusals_change_nothing(hall: Hall) -> None:
    before = await hall.stored()
    client = Client(A_HZ)
    try:
        # A malformed offer, an answer instead of an offer, an offer without audio.
        bad = await hall.join(hall.delegates[0], "v=0\r\nthis is not sdp\r\n")
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == "invalid_sdp"
        wrong_type = await hall.post(hall.delegates[0], "/media", {"sdp": "v=0", "type": "answer"})
        assert wrong_type.status_code == 400
        assert wrong_type.json()["error"]["code"] == "invalid_request"
        video_only = Client(None)
        video_only.pc.addTransceiver("video", direction="recvonly")
        await video_only.pc.setLocalDescription(await video_only.pc.createOffer())
        no_audio = await hall.join(hall.delegates[0], video_only.pc.localDescription.sdp)
        await video_only.close()
        assert no_audio.status_code == 400
        assert no_audio.json()["error"]["code"] == "invalid_sdp"

        client.pc.addTrack(client.tone)  # type: ignore[arg-type]
        await client.pc.setLocalDescription(await client.pc.createOffer())
        offer = client.pc.localDescription.sdp
        lines = offer.split("\r\n")
        for broken, message in (
            ("\r\n".join(line for line in lines if "fingerprint" not in line), "fingerprint"),
            ("\r\n".join(line for line in lines if "ice-pwd" not in line), "ICE"),
            (offer.replace("opus/48000/2", "speex/8000"), "Opus"),
        ):
            refused = await hall.join(hall.delegates[0], broken)
            assert refused.status_code == 400, message
            assert refused.json()["error"]["code"] == "invalid_sdp"
            assert message in refused.json()["error"]["message"]
        # Someone who does not take part in the meeting.
        outsider = await hall.join(hall.outsider, offer)
        assert outsider.status_code == 403
        assert outsider.json()["error"]["code"] == "not_a_participant"
        async with hall.server.http(hall.delegates[0]) as http:
            missing = await http.post(
                "/api/v1/meetings/999999/media", json={"sdp": offer, "type": "offer"}
            )
        assert missing.status_code == 404
        # Nor may they list or fetch the meeting's recordings.
        async with hall.server.http(hall.outsider) as http:
            listing = await http.get(f"/api/v1/meetings/{hall.meeting_id}/recordings")
            fetch = await http.get(f"/api/v1/meetings/{hall.meeting_id}/recordings/1")
        assert listing.status_code == 403 and fetch.status_code == 403
        assert listing.json()["error"]["code"] == "not_a_participant"
        # Someone else's session cannot be ended.
        async with hall.server.http(hall.delegates[0]) as http:
            nobody = await http.delete(f"/api/v1/meetings/{hall.meeting_id}/media/nope")
        assert nobody.status_code == 404
        assert await hall.stored() == before

        # A closed meeting refuses new remote participants.
        closed = await hall.post(hall.chair, "/close")
        assert closed.status_code == 200, closed.text
        before = await hall.stored()
        refused = await hall.join(hall.delegates[0], offer)
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "meeting_closed"
        assert await hall.stored() == before
    finally:
        await client.close()


async def test_room_limit(make_server: MakeServer) -> None:
    hall = await open_hall(make_server, media_max_participants=1)
    first, second = Client(A_HZ), Client(C_HZ)
    sessions: dict[str, str] = {}
    try:
        await first.join(signal_through(hall, hall.delegates[0], sessions, "first"))
        second.pc.addTrack(second.tone)  # type: ignore[arg-type]
        await second.pc.setLocalDescription(await second.pc.createOffer())
        before = await hall.stored()
        full = await hall.join(hall.delegates[1], second.pc.localDescription.sdp)
        assert full.status_code == 409
        assert full.json()["error"]["code"] == "media_full"
        assert await hall.stored() == before
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize("how", ["silent", "closed"])
async def test_a_vanished_peer_is_dropped(make_server: MakeServer, how: str) -> None:
    hall = await open_hall(make_server, media_silence_timeout_secs=2.0)
    client = Client(A_HZ)
    sessions: dict[str, str] = {}
    async with hall.server.socket(hall.chair) as ws:
        await ws.subscribe({hall.topic: 0})
        try:
            await client.join(signal_through(hall, hall.delegates[0], sessions, "a"))
            await ws.next_event("media.joined")
            # Connected both ways: it hears the floor (silence) and is heard sending.
            await client.wait_frames(10)
            if how == "silent":
                # The tablet stops sending (its microphone track ends) but stays connected.
                assert client.tone is not None
                client.tone.stop()
            else:
                await client.pc.close()
            left = await ws.next_event("media.left", timeout=10)
            assert left["data"] == {
                "session_id": sessions["a"],
                "user_id": hall.delegate_ids[0],
                "reason": how,
            }
        finally:
            await client.close()


RED = (220, 30, 30)
BLUE = (30, 30, 220)


async def test_everyone_sees_the_speaker(hall: Hall) -> None:
    """The floor's video: the speaker's camera, encoded once, keyframe for newcomers."""
    a, c = Client(A_HZ, color=RED), Client(C_HZ, color=BLUE)
    b = Client(None, watch=True)
    sessions: dict[str, str] = {}
    try:
        for name, client, token in (
            ("a", a, hall.delegates[0]),
            ("b", b, hall.delegates[1]),
            ("c", c, hall.delegates[2]),
        ):
            await client.join(signal_through(hall, token, sessions, name))
        speaker_a = await hall.give_floor(hall.delegates[0])
        await b.wait_seeing(RED)
        await c.wait_seeing(RED)
        # C's camera is off the floor: its packets are dropped before any decoding.
        engine = media_runtime(hall.server.ctx).engine
        assert [r._enabled for r in engine._peers[sessions["c"]].video_receivers] == [False]
        assert [r._enabled for r in engine._peers[sessions["a"]].video_receivers] == [True]
        finished = await hall.post(hall.chair, f"/speakers/{speaker_a}/finish")
        assert finished.status_code in (200, 204), finished.text
        await hall.give_floor(hall.delegates[2])
        await b.wait_seeing(BLUE)
        await a.wait_seeing(BLUE)
        # A tablet joining now sees the speaker at once: it gets a keyframe.
        late = Client(None, watch=True)
        try:
            await late.join(signal_through(hall, hall.delegates[3], sessions, "late"))
            await late.wait_seeing(BLUE)
        finally:
            await late.close()
        stats = await media_runtime(hall.server.ctx).engine.room_stats(hall.meeting_id)
        assert stats["keyframes"] >= 3  # first listener, new speaker, newcomer
    finally:
        for client in (a, b, c):
            await client.close()


async def test_closing_the_meeting_ends_its_media(hall: Hall) -> None:
    client = Client(A_HZ)
    sessions: dict[str, str] = {}
    async with hall.server.socket(hall.chair) as ws:
        await ws.subscribe({hall.topic: 0})
        try:
            await client.join(signal_through(hall, hall.delegates[0], sessions, "a"))
            await ws.next_event("media.joined")
            closed = await hall.post(hall.chair, "/close")
            assert closed.status_code == 200, closed.text
            left = await ws.next_event("media.left", timeout=10)
            assert left["data"] == {
                "session_id": sessions["a"],
                "user_id": hall.delegate_ids[0],
                "reason": "meeting_closed",
            }
        finally:
            await client.close()
    engine = media_runtime(hall.server.ctx).engine
    assert await engine.peers(hall.meeting_id) == []


async def test_the_chair_is_always_heard_with_the_speaker(hall: Hall) -> None:
    chair_hz = 700.0
    chair, a, b = Client(chair_hz), Client(A_HZ), Client(None)
    sessions: dict[str, str] = {}
    try:
        for name, client, token in (
            ("chair", chair, hall.chair),
            ("a", a, hall.delegates[0]),
            ("b", b, hall.delegates[1]),
        ):
            await client.join(signal_through(hall, token, sessions, name))
        # Nobody has been given the floor: the chair alone.
        await b.wait_hearing(chair_hz, absent=(A_HZ,))
        await hall.give_floor(hall.delegates[0])
        # Both the chair and the speaker, mixed.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not (b.level_at(A_HZ) > 0.3 and b.level_at(chair_hz) > 0.3):
            assert loop.time() < deadline, (b.level_at(A_HZ), b.level_at(chair_hz))
            await asyncio.sleep(0.05)
    finally:
        for client in (chair, a, b):
            await client.close()
