"""The chair and remote attendance: joining the sitting checks a delegate in as remote
(counted toward the quorum as the meeting's rule says), the chair mutes, asks to unmute
and removes a remote participant, and a remote speaker whose audio is lost keeps the floor
with the timer stopped until they are heard again (or the grace period ends)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from server.audit import AuditRecord
from server.realtime.models import EventRecord
from tests.conftest import MakeServer
from tests.media.conftest import Hall, open_hall
from tests.media.peers import Client, Signal

A_HZ = 440.0


def signal(hall: Hall, token: str, sessions: list[str]) -> Signal:
    async def exchange(sdp: str) -> str:
        answer = await hall.join(token, sdp)
        assert answer.status_code == 201, answer.text
        sessions.append(answer.json()["session_id"])
        return str(answer.json()["sdp"])

    return exchange


async def state(hall: Hall, token: str) -> dict[str, Any]:
    async with hall.server.http(token) as client:
        response = await client.get(f"/api/v1/meetings/{hall.meeting_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())


async def collect(
    ws: Any, *types: str, timeout: float = 10.0, connection: str | None = None
) -> dict[str, dict[str, Any]]:
    """The first event of each of ``types``, whatever their order (``media.quality`` only
    with ``connection`` when given: a busy machine may rate a connection fair meanwhile)."""
    found: dict[str, dict[str, Any]] = {}
    while set(types) - set(found):
        event = await ws.next_event(timeout=timeout)
        if (
            event["type"] == "media.quality"
            and connection is not None
            and event["data"]["connection"] != connection
        ):
            continue
        if event["type"] in types:
            found.setdefault(event["type"], event)
    return found


def entry(meeting: dict[str, Any], user_id: int) -> dict[str, Any]:
    return next(p for p in meeting["participants"] if p["user_id"] == user_id)


async def stored(hall: Hall) -> tuple[int, list[dict[str, Any]]]:
    """Events of the meeting and its participants, less what the connection watcher writes
    by itself meanwhile (connection quality)."""
    async with hall.server.ctx.read() as session:
        events = (
            await session.execute(
                select(func.count())
                .select_from(EventRecord)
                .where(EventRecord.topic == hall.topic, EventRecord.type != "media.quality")
            )
        ).scalar_one()
    people = (await state(hall, hall.chair))["participants"]
    for person in people:
        if person["media"]:
            person["media"]["connection"] = None
    return int(events), people


async def refused(
    hall: Hall, token: str, method: str, path: str, body: Any, status: int, code: str
) -> None:
    """The call is refused with ``status``/``code`` and nothing stored changes."""
    before = await stored(hall)
    async with hall.server.http(token) as client:
        response = await client.request(
            method, f"/api/v1/meetings/{hall.meeting_id}{path}", json=body
        )
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert await stored(hall) == before


async def test_joining_checks_in_as_remote_and_the_rule_says_if_it_counts(hall: Hall) -> None:
    client = Client(A_HZ)
    sessions: list[str] = []
    async with hall.server.socket(hall.chair) as ws:
        await ws.subscribe({hall.topic: 0})
        try:
            await client.join(signal(hall, hall.delegates[0], sessions))
            changed = await ws.next_event("attendance.changed")
            participant = changed["data"]["participant"]
            assert participant["user_id"] == hall.delegate_ids[0]
            assert participant["present"] is True and participant["mode"] == "remote"
            assert participant["media"]["session_id"] == sessions[0]
            assert participant["media"]["connection"] == "good"
            assert changed["data"]["quorum"]["present"] == 1
            assert changed["data"]["quorum"]["remote"] == 1
            meeting = await state(hall, hall.chair)
            assert entry(meeting, hall.delegate_ids[0])["mode"] == "remote"
            assert meeting["quorum"]["rule"]["remote_counts"] is True

            # The rule may leave remote delegates out of the quorum.
            async with hall.server.http(hall.chair) as http:
                bad = await http.patch(
                    f"/api/v1/meetings/{hall.meeting_id}", json={"remote_counts_for_quorum": "no"}
                )
                assert bad.status_code == 400, bad.text
                patched = await http.patch(
                    f"/api/v1/meetings/{hall.meeting_id}", json={"remote_counts_for_quorum": False}
                )
                assert patched.status_code == 200, patched.text
                assert patched.json()["quorum"]["present"] == 0
                assert patched.json()["quorum"]["remote"] == 1
                assert patched.json()["quorum"]["rule"]["remote_counts"] is False
            updated = await ws.next_event("meeting.updated")
            assert updated["data"]["quorum"]["present"] == 0

            # Leaving on purpose checks a remote delegate out.
            async with hall.server.http(hall.delegates[0]) as http:
                left = await http.delete(f"/api/v1/meetings/{hall.meeting_id}/media/{sessions[0]}")
                assert left.status_code == 204, left.text
            await ws.next_event("media.left")
            changed = await ws.next_event("attendance.changed")
            assert changed["data"]["participant"]["present"] is False
            assert changed["data"]["participant"]["media"] is None
        finally:
            await client.close()


async def test_the_chair_mutes_asks_to_unmute_and_removes(hall: Hall) -> None:
    clients = [Client(A_HZ), Client(None)]
    sessions: list[str] = []
    base = hall.delegate_ids
    async with hall.server.socket(hall.chair) as ws:
        await ws.subscribe({hall.topic: 0})
        try:
            await clients[0].join(signal(hall, hall.delegates[0], sessions))
            await clients[1].join(signal(hall, hall.delegates[1], sessions))
            a, b = sessions
            mute = f"/media/{a}/mute"

            # Bad input and the wrong people: refused, nothing changes.
            await refused(hall, hall.chair, "POST", mute, {"muted": "yes"}, 400, "invalid_request")
            await refused(
                hall, hall.chair, "POST", mute, {"muted": True, "x": 1}, 400, "invalid_request"
            )
            await refused(
                hall,
                hall.chair,
                "POST",
                "/media/nope/mute",
                {"muted": True},
                404,
                "media_session_not_found",
            )
            await refused(hall, hall.delegates[1], "POST", mute, {"muted": True}, 403, "not_chair")
            await refused(
                hall, hall.outsider, "POST", mute, {"muted": True}, 403, "not_a_participant"
            )
            await refused(
                hall, hall.chair, "POST", f"/media/{a}/unmute-request", None, 409, "not_muted"
            )
            await refused(hall, hall.delegates[1], "DELETE", f"/media/{a}", None, 403, "not_chair")

            muted = await hall.post(hall.chair, mute, {"muted": True})
            assert muted.status_code == 200, muted.text
            assert muted.json()["participant"]["media"]["muted"] is True
            event = await ws.next_event("media.muted")
            assert event["data"]["user_id"] == base[0] and event["data"]["muted"] is True

            # Only the participant unmutes, and only once the chair asked.
            await refused(hall, hall.chair, "POST", mute, {"muted": False}, 422, "unmute_by_owner")
            await refused(
                hall, hall.delegates[0], "POST", mute, {"muted": False}, 403, "muted_by_chair"
            )
            await refused(
                hall,
                hall.delegates[0],
                "POST",
                f"/media/{a}/unmute-request",
                None,
                403,
                "not_chair",
            )
            asked = await hall.post(hall.chair, f"/media/{a}/unmute-request")
            assert asked.status_code == 200, asked.text
            event = await ws.next_event("media.unmute_requested")
            assert event["data"]["user_id"] == base[0]
            assert event["data"]["participant"]["media"]["unmute_requested"] is True
            unmuted = await hall.post(hall.delegates[0], mute, {"muted": False})
            assert unmuted.status_code == 200, unmuted.text
            assert unmuted.json()["participant"]["media"]["muted"] is False

            # The chair removes B: media.left "removed", B checked out, audited.
            async with hall.server.http(hall.chair) as http:
                removed = await http.delete(f"/api/v1/meetings/{hall.meeting_id}/media/{b}")
                assert removed.status_code == 204, removed.text
            event = await ws.next_event("media.left")
            assert event["data"] == {"session_id": b, "user_id": base[1], "reason": "removed"}
            meeting = await state(hall, hall.chair)
            assert entry(meeting, base[1])["present"] is False
            assert entry(meeting, base[1])["media"] is None
            async with hall.server.ctx.read() as session:
                actions = list(
                    (
                        await session.execute(
                            select(AuditRecord.action).where(AuditRecord.action.like("media.%"))
                        )
                    ).scalars()
                )
            assert {"media.mute", "media.unmute_request", "media.leave"} <= set(actions)
        finally:
            for client in clients:
                await client.close()


async def test_a_lost_speaker_keeps_the_floor_with_the_timer_stopped(
    make_server: MakeServer,
) -> None:
    hall = await open_hall(
        make_server,
        media_audio_lost_secs=1.0,
        media_quality_poll_secs=0.2,
        media_silence_timeout_secs=60.0,
        media_floor_grace_secs=60.0,
    )
    first, second = Client(A_HZ), Client(A_HZ)
    sessions: list[str] = []
    async with hall.server.socket(hall.chair) as ws:
        await ws.subscribe({hall.topic: 0})
        try:
            await first.join(signal(hall, hall.delegates[0], sessions))
            await first.wait_frames(10)
            await hall.give_floor(hall.delegates[0])
            # The tablet's audio stops (its network is gone): the speech pauses.
            assert first.tone is not None
            first.tone.stop()
            seen = await collect(ws, "speaker.paused", "media.quality", connection="lost")
            paused = seen["speaker.paused"]
            assert paused["data"]["reason"] == "audio_lost"
            current = paused["data"]["speakers"]["current"]
            assert current["paused"] is True and current["remaining_secs"] > 0
            assert seen["media.quality"]["data"]["connection"] == "lost"
            assert seen["media.quality"]["data"]["participant"]["media"]["connection"] == "lost"
            meeting = await state(hall, hall.chair)
            assert meeting["speakers"]["current"]["paused"] is True

            # It rejoins with a new session: the stale one goes, the speech runs on.
            await second.join(signal(hall, hall.delegates[0], sessions))
            resumed = await ws.next_event("speaker.resumed", timeout=10)
            assert resumed["data"]["user_id"] == hall.delegate_ids[0]
            assert resumed["data"]["speakers"]["current"]["paused"] is False
            meeting = await state(hall, hall.chair)
            me = entry(meeting, hall.delegate_ids[0])
            assert me["media"]["session_id"] == sessions[1] and me["present"] is True
        finally:
            await first.close()
            await second.close()


async def test_past_the_grace_period_the_floor_is_free(make_server: MakeServer) -> None:
    hall = await open_hall(
        make_server,
        media_audio_lost_secs=1.0,
        media_quality_poll_secs=0.2,
        media_silence_timeout_secs=60.0,
        media_floor_grace_secs=1.0,
    )
    client = Client(A_HZ)
    sessions: list[str] = []
    async with hall.server.socket(hall.chair) as ws:
        await ws.subscribe({hall.topic: 0})
        try:
            await client.join(signal(hall, hall.delegates[0], sessions))
            await client.wait_frames(10)
            speaker_id = await hall.give_floor(hall.delegates[0])
            assert client.tone is not None
            client.tone.stop()
            await ws.next_event("speaker.paused", timeout=10)
            finished = await ws.next_event("speaker.finished", timeout=10)
            assert finished["data"]["speaker_id"] == speaker_id
            assert finished["data"]["speakers"]["current"] is None
        finally:
            await client.close()
