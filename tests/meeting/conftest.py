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
from server.org.models import User
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
    """A token for ``username``, minted by the server's token service.

    Signing in is tested with the core; here it would only cost an Argon2 check per user.
    """
    async with server.ctx.read() as session:
        user_id = (
            await session.execute(select(User.id).where(User.username == username))
        ).scalar_one()
    token, _ttl = server.ctx.tokens.issue(user_id, server.ctx.clock.now())
    return token


async def make_room(
    server: RunningServer, city: DemoCity, *, delegates: int = 4, **extra: Any
) -> AsyncIterator[Room]:
    names = [f"delegate{i:03d}" for i in range(1, delegates + 1)]
    tokens = {"chair": await login(server, "chair"), "secretary": await login(server, "secretary")}
    for name in names:
        tokens[name] = await login(server, name)
    tokens["guest"] = await login(server, "standing")
    # Every demo delegate sits in the demo meeting; a ward's staff member sits in none.
    tokens["outsider"] = await login(server, "ward001")
    chair_token = tokens["chair"]
    chair = server.http(chair_token)
    body = {
        "title": "Kỳ họp thứ 12 HĐND thành phố",
        "starts_at": "2026-11-23T08:00:00+07:00",
        "place": "Hội trường",
        "chair_ids": [city.chair_id],
        "secretary_ids": [city.secretary_id],
        "delegate_ids": city.delegate_ids[:delegates],
        "guest_ids": [city.standing_id],
        **extra,
    }
    response = await chair.post("/api/v1/meetings", json=body)
    assert response.status_code == 201, response.text
    clients = {name: server.http(token) for name, token in tokens.items() if name != "chair"}
    room = Room(
        server=server,
        city=city,
        meeting_id=response.json()["id"],
        chair=chair,
        secretary=clients["secretary"],
        delegates=[clients[n] for n in names],
        guest=clients["guest"],
        outsider=clients["outsider"],
        tokens=tokens,
        delegate_ids=city.delegate_ids[:delegates],
        guest_id=city.standing_id,
        outsider_id=city.ward_user_ids[0],
    )
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
        return int((await session.execute(select(func.count()).select_from(Meeting))).scalar_one())


async def store_pdf(
    server: RunningServer, uploader_id: int, title: str = "Tài liệu kỳ họp", pages: int = 3
) -> int:
    """A generated Vietnamese PDF stored as ``uploader_id``'s file; returns its id."""
    from meeting.demo import document_pdf, store_document
    from server.auth.principal import Principal
    from server.org.models import User

    data, count = document_pdf(title, pages)
    async with server.ctx.read() as session:
        user = await session.get(User, uploader_id)
    assert user is not None
    stored = await store_document(server.ctx, Principal.of(user), data, f"{title}.pdf", count)
    return stored.id


async def next_on(ws: Any, topic: str, timeout: float = 5.0) -> dict[str, Any]:
    """The next event of ``topic`` (presence and unit events are skipped)."""
    while True:
        message: dict[str, Any] = await ws.recv(timeout)
        if message.get("op") == "event" and message.get("topic") == topic:
            return message


async def refused(
    room: Room,
    client: httpx.AsyncClient,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    status: int,
    code: str,
) -> None:
    """The request gets ``status`` with ``code`` and the meeting's state is unchanged."""
    before = await room.state()
    if method == "delete":
        response = await client.delete(room.base + path)
    elif method == "patch":
        response = await client.patch(room.base + path, json=body or {})
    else:
        response = await client.post(room.base + path, json=body or {})
    assert response.status_code == status, (method, path, body, response.text[:300])
    assert response.json()["error"]["code"] == code, (method, path, body, response.text[:300])
    assert await room.state() == before, (method, path, body)
