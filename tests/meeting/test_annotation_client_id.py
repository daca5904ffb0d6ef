"""A tablet's offline queue resends annotations safely: the same client id answers the
annotation stored the first time, never a second copy."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from meeting.models import Annotation
from tests.meeting.conftest import Room, store_pdf

NOTE = {"x": 0.5, "y": 0.5, "text": "Ghi chú viết khi mất mạng"}


async def on_agenda(room: Room) -> int:
    doc = await store_pdf(room.server, room.city.chair_id, "Báo cáo", pages=2)
    response = await room.chair.post(
        room.base + "/agenda", json={"title": "Báo cáo", "document_ids": [doc]}
    )
    assert response.status_code == 201, response.text
    return doc


async def stored(room: Room, doc: int) -> int:
    query = select(func.count()).select_from(Annotation).where(Annotation.file_id == doc)
    async with room.server.ctx.read() as session:
        return int((await session.execute(query)).scalar_one())


async def test_a_resent_annotation_is_stored_once(room: Room) -> None:
    doc = await on_agenda(room)
    url = f"/api/v1/files/{doc}/annotations"
    body = {"page": 1, "kind": "note", "data": NOTE, "client_id": "tab1-0001-abcdef"}
    first = await room.delegates[0].post(url, json=body)
    assert first.status_code == 201, first.text
    assert first.json()["client_id"] == "tab1-0001-abcdef"
    again = await room.delegates[0].post(url, json=body)
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert await stored(room, doc) == 1
    # Another reader's queue may use the same id: ids are the reader's own.
    other = await room.delegates[1].post(url, json=body)
    assert other.status_code == 201, other.text
    assert other.json()["id"] != first.json()["id"]
    # Without a client id every call adds one, as before.
    for _ in range(2):
        plain = await room.delegates[0].post(url, json={"page": 2, "kind": "note", "data": NOTE})
        assert plain.status_code == 201, plain.text
    assert await stored(room, doc) == 4


@pytest.mark.parametrize("client_id", ["short", "x" * 65, "has space 123", 12345678])
async def test_a_bad_client_id_is_refused_and_stores_nothing(room: Room, client_id: object) -> None:
    doc = await on_agenda(room)
    response = await room.delegates[0].post(
        f"/api/v1/files/{doc}/annotations",
        json={"page": 1, "kind": "note", "data": NOTE, "client_id": client_id},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_request"
    assert await stored(room, doc) == 0
