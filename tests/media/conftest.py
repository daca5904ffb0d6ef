"""A council hall for the media tests: a meeting in session with a chair and delegates,
on a server whose ICE offers 127.0.0.1 only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import func, select

from meeting.media.models import MediaRecording
from server.app import default_features
from server.demo import DemoCity, seed_demo
from server.features import Feature
from server.realtime.models import EventRecord
from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.harness import RunningServer
from tests.media.peers import loopback_only


def media_features() -> list[Feature]:
    from meeting.media.feature import feature as media_feature

    features = default_features()
    if not any(f.name == "media" for f in features):
        features.append(media_feature())
    return features


@dataclass
class Hall:
    server: RunningServer
    city: DemoCity
    meeting_id: int
    chair: str
    # Tokens of delegates 0..n-1 of the meeting.
    delegates: list[str] = field(default_factory=list)
    delegate_ids: list[int] = field(default_factory=list)
    outsider: str = ""

    @property
    def topic(self) -> str:
        return f"meeting:{self.meeting_id}"

    async def post(self, token: str, path: str, body: Any = None) -> Any:
        async with self.server.http(token) as client:
            return await client.post(
                f"/api/v1/meetings/{self.meeting_id}{path}", json=body if body is not None else {}
            )

    async def join(self, token: str, sdp: str) -> Any:
        return await self.post(token, "/media", {"sdp": sdp, "type": "offer"})

    async def give_floor(self, delegate_token: str) -> int:
        asked = await self.post(delegate_token, "/speakers", {"kind": "speech"})
        assert asked.status_code == 201, asked.text
        speaker_id = int(asked.json()["id"])
        granted = await self.post(self.chair, f"/speakers/{speaker_id}/grant")
        assert granted.status_code in (200, 204), granted.text
        return speaker_id

    async def stored(self) -> tuple[int, int]:
        """(events on the meeting's topic, recordings): what a refusal must not change.

        Less what the connection watcher writes by itself meanwhile: a connected peer's
        quality may change at any moment (``media.quality``)."""
        async with self.server.ctx.read() as session:
            events = (
                await session.execute(
                    select(func.count())
                    .select_from(EventRecord)
                    .where(EventRecord.topic == self.topic, EventRecord.type != "media.quality")
                )
            ).scalar_one()
            recordings = (
                await session.execute(select(func.count()).select_from(MediaRecording))
            ).scalar_one()
        return int(events), int(recordings)


async def open_hall(make_server: MakeServer, **settings: Any) -> Hall:
    loopback_only()
    server = await make_server(
        features=media_features(),
        media_addresses=("127.0.0.1",),
        media_peer_networks=("127.0.0.0/8",),
        **settings,
    )
    city, _ = await seed_demo(server.ctx, password=DEMO_PASSWORD, communes=6, delegates=9)
    chair = await server.login("chair", DEMO_PASSWORD)
    delegate_ids = city.delegate_ids[:4]
    async with server.http(chair) as client:
        created = await client.post(
            "/api/v1/meetings",
            json={
                "title": "Kỳ họp trực tuyến",
                "starts_at": "2026-11-23T08:00:00+00:00",
                "chair_ids": [city.chair_id],
                "delegate_ids": delegate_ids,
            },
        )
        assert created.status_code == 201, created.text
        meeting_id = int(created.json()["id"])
        started = await client.post(f"/api/v1/meetings/{meeting_id}/start")
        assert started.status_code == 200, started.text
    hall = Hall(server, city, meeting_id, chair, delegate_ids=delegate_ids)
    for number in range(1, len(delegate_ids) + 1):
        hall.delegates.append(await server.login(f"delegate{number:03d}", DEMO_PASSWORD))
    hall.outsider = await server.login("delegate009", DEMO_PASSWORD)
    return hall


@pytest.fixture
async def hall(make_server: MakeServer) -> Hall:
    return await open_hall(make_server)
