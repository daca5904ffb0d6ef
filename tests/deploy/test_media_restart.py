"""A hybrid sitting behind nginx survives a restart of the node holding its media.

Two nodes behind deploy/nginx/dienhong.conf, which routes a meeting's media calls to one
node by the meeting's id. Two remote delegates (aiortc peers on loopback) behave as the
delegate app does: when nothing arrives for a moment they offer a new session through
nginx, again with back-off until one is answered. One of them holds the floor. The node
holding the sessions gets SIGTERM and is started again on its port: both come back to it by
themselves, the listener hears the speaker again, and the speaker still holds the floor.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

import httpx
import pytest

from tests.deploy.cluster import Cluster
from tests.media.peers import Client, loopback_only
from tests.server.test_nodes import Node, login, start_node

# Long enough for anything below to happen several times over; never a measured figure.
PATIENCE_SECS = 60
TONE_HZ = 440.0
# As the delegate app: nothing heard for this long means the session is gone.
NO_AUDIO_SECS = 2.0
REJOIN_FIRST_SECS = 0.5
REJOIN_MAX_SECS = 4.0


@pytest.fixture
def node_settings() -> dict[str, str]:
    return {
        "DIENHONG_MEDIA_ADDRESSES": "127.0.0.1",
        "DIENHONG_MEDIA_PEER_NETWORKS": "127.0.0.0/8",
        "DIENHONG_MEDIA_QUALITY_POLL_SECS": "0.5",
        "DIENHONG_MEDIA_AUDIO_LOST_SECS": "1.0",
        "DIENHONG_SPEECH_TIMER_RESCAN_SECS": "1",
    }


class RejoiningPeer:
    """One remote tablet: a session at a time, a new one whenever nothing arrives."""

    def __init__(
        self, cluster: Cluster, token: str, meeting_id: int, frequency: float | None
    ) -> None:
        self.cluster = cluster
        self.token = token
        self.meeting_id = meeting_id
        self.frequency = frequency
        self.client: Client | None = None
        self.sessions: list[str] = []
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def _signal(self, sdp: str) -> str:
        async with self.cluster.nginx.http(self.token) as http:
            answer = await http.post(
                f"/api/v1/meetings/{self.meeting_id}/media", json={"sdp": sdp, "type": "offer"}
            )
        if answer.status_code != 201:
            raise ConnectionError(f"{answer.status_code} {answer.text[:200]}")
        self.sessions.append(answer.json()["session_id"])
        return str(answer.json()["sdp"])

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = REJOIN_FIRST_SECS
        while True:
            client = Client(self.frequency)
            try:
                await client.join(self._signal)
            except (ConnectionError, httpx.HTTPError):
                await client.close()
                await asyncio.sleep(delay)
                delay = min(REJOIN_MAX_SECS, delay * 2)
                continue
            self.client, delay = client, REJOIN_FIRST_SECS
            heard, heard_at = client.frames, loop.time()
            while client.pc.connectionState not in ("failed", "closed"):
                await asyncio.sleep(0.25)
                if client.frames > heard:
                    heard, heard_at = client.frames, loop.time()
                elif loop.time() - heard_at > NO_AUDIO_SECS:
                    break
            await client.close()

    async def hearing(self, frequency: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PATIENCE_SECS
        while True:
            client = self.client
            if client is not None:
                with contextlib.suppress(AssertionError):
                    await client.wait_hearing(frequency, timeout=2)
                    return
            assert loop.time() < deadline, f"not hearing {frequency} Hz again"
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.client is not None:
            await self.client.close()


async def _owner(cluster: Cluster, chair: str, meeting_id: int, session_id: str) -> int:
    """Which node holds the session: asked directly, without changing anything (an unmute
    request for an unmuted microphone is refused as 409 where the session is, 404 else)."""
    for index, node in enumerate(cluster.nodes):
        async with httpx.AsyncClient(
            base_url=node.url, timeout=10, headers={"Authorization": f"Bearer {chair}"}
        ) as http:
            answer = await http.post(
                f"/api/v1/meetings/{meeting_id}/media/{session_id}/unmute-request"
            )
        if answer.status_code == 409:
            return index
        assert answer.status_code == 404, answer.text
    raise AssertionError(f"no node holds media session {session_id}")


async def _state(cluster: Cluster, token: str, meeting_id: int) -> dict[str, Any]:
    async with cluster.nginx.http(token) as http:
        answer = await http.get(f"/api/v1/meetings/{meeting_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def test_a_restarted_media_node_gets_its_sitting_back(cluster: Cluster) -> None:
    loopback_only()
    city = cluster.city
    node = cluster.nodes[0]
    chair = await login(node, "chair")
    tokens = [await login(node, f"delegate00{n}") for n in (1, 2)]
    async with cluster.nginx.http(chair) as http:
        created = await http.post(
            "/api/v1/meetings",
            json={
                "title": "Phiên họp kết hợp",
                "starts_at": "2026-11-30T08:00:00+00:00",
                "chair_ids": [city.chair_id],
                "delegate_ids": city.delegate_ids[:2],
            },
        )
        assert created.status_code == 201, created.text
        meeting_id = int(created.json()["id"])
        assert (await http.post(f"/api/v1/meetings/{meeting_id}/start")).status_code == 200
    speaker = RejoiningPeer(cluster, tokens[0], meeting_id, TONE_HZ)
    listener = RejoiningPeer(cluster, tokens[1], meeting_id, None)
    try:
        speaker.start()
        listener.start()
        async with cluster.nginx.http(tokens[0]) as http:
            asked = await http.post(
                f"/api/v1/meetings/{meeting_id}/speakers", json={"kind": "speech"}
            )
            assert asked.status_code == 201, asked.text
        speaker_id = int(asked.json()["id"])
        async with cluster.nginx.http(chair) as http:
            granted = await http.post(f"/api/v1/meetings/{meeting_id}/speakers/{speaker_id}/grant")
            assert granted.status_code == 200, granted.text
        await listener.hearing(TONE_HZ)
        assert len(speaker.sessions) == 1 and len(listener.sessions) == 1
        owner = await _owner(cluster, chair, meeting_id, listener.sessions[0])
        assert owner == await _owner(cluster, chair, meeting_id, speaker.sessions[0])

        # The node holding the sitting restarts on its port.
        old = cluster.nodes[owner]
        old.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(old.process.wait(), PATIENCE_SECS)
        port = cluster.port_of(old)
        restarted: Node = await start_node(
            cluster.env, cluster.tmp / "node-restarted.log", port=port
        )
        cluster.nodes[owner] = restarted

        # Both tablets came back by themselves, to the same node, and the floor is heard
        # (by the listener's new session: what the old one heard is no proof).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PATIENCE_SECS
        while len(listener.sessions) < 2 or len(speaker.sessions) < 2:
            assert loop.time() < deadline, "the tablets did not rejoin by themselves"
            await asyncio.sleep(0.2)
        await listener.hearing(TONE_HZ)
        assert await _owner(cluster, chair, meeting_id, listener.sessions[-1]) == owner
        assert await _owner(cluster, chair, meeting_id, speaker.sessions[-1]) == owner
        # The speaker still holds the floor: the same speech, running again.
        deadline = loop.time() + PATIENCE_SECS
        while True:
            state = await _state(cluster, chair, meeting_id)
            current = state["speakers"]["current"]
            assert current is not None and current["id"] == speaker_id, current
            if not current["paused"]:
                break
            assert loop.time() < deadline, "the speech stayed paused"
            await asyncio.sleep(0.5)
        people = {p["user_id"]: p for p in state["participants"]}
        for user_id, peer in zip(city.delegate_ids[:2], (speaker, listener), strict=True):
            assert people[user_id]["present"] is True and people[user_id]["mode"] == "remote"
            assert people[user_id]["media"]["session_id"] == peer.sessions[-1]
    finally:
        await speaker.stop()
        await listener.stop()
