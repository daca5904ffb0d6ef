"""Fixtures for meeting tests: a meeting of the small demo city, with logged-in clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from meeting.models import Meeting
from server.demo import DemoCity
from tests.conftest import DEMO_PASSWORD
from tests.harness import RunningServer


@dataclass
class Room:
    """A meeting with the chair, the secretary, delegates and a guest signed in."""

    server: RunningServer
    city: DemoCity
    meeting_id: int
    chair: httpx.AsyncClient
    secretary: httpx.AsyncClient
    delegates: list[httpx.AsyncClient]
    guest: httpx.AsyncClient
    outsider: httpx.AsyncClient
    tokens: dict[str, str] = field(default_factory=dict)
    delegate_ids: list[int] = field(default_factory=list)
    guest_id: int = 0
    outsider_id: int = 0

    @property
    def base(self) -> str:
        return f"/api/v1/meetings/{self.meeting_id}"

    async def state(self, client: httpx.AsyncClient | None = None) -> dict[str, Any]:
        response = await (client or self.chair).get(self.base)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result


async def login(server: RunningServer, username: str) -> str:
    return await server.login(username, DEMO_PASSWORD)


async def make_room(server: RunningServer, city: DemoCity, *, delegates: int = 4,
                    **extra: Any) -> AsyncIterator[Room]:
    chair_token = await login(server, "chair")
    names = [f"delegate{i:03d}" for i in range(1, delegates + 1)]
    tokens = {"chair": chair_token, "secretary": await login(server, "secretary")}
    for name in names:
        tokens[name] = await login(server, name)
    tokens["guest"] = await login(server, "standing")
    tokens["outsider"] = await login(server, f"delegate{delegates + 1:03d}")
    chair = server.http(chair_token)
    body = {
        "title": "Kỳ họp thứ 12 HĐND thành phố", "starts_at": "2026-11-23T08:00:00+07:00",
        "place": "Hội trường", "chair_ids": [city.chair_id],
        "secretary_ids": [city.secretary_id], "delegate_ids": city.delegate_ids[:delegates],
        "guest_ids": [city.standing_id], **extra,
    }
    response = await chair.post("/api/v1/meetings", json=body)
    assert response.status_code == 201, response.text
    clients = {name: server.http(token) for name, token in tokens.items() if name != "chair"}
    room = Room(server=server, city=city, meeting_id=response.json()["id"], chair=chair,
                secretary=clients["secretary"], delegates=[clients[n] for n in names],
                guest=clients["guest"], outsider=clients["outsider"], tokens=tokens,
                delegate_ids=city.delegate_ids[:delegates], guest_id=city.standing_id,
                outsider_id=city.delegate_ids[delegates])
    try:
        yield room
    finally:
        for client in [chair, *clients.values()]:
            await client.aclose()


@pytest.fixture
async def room(server: RunningServer, city: DemoCity) -> AsyncIterator[Room]:
    async for made in make_room(server, city):
        yield made


async def meeting_count(server: RunningServer) -> int:
    async with server.ctx.read() as session:
        return int((await session.execute(select(func.count()).select_from(Meeting)))
                   .scalar_one())
