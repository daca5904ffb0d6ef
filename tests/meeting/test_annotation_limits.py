"""Annotations cannot exhaust the server: a byte budget per reader and document, a limit on
points per stroke, and annotated copies built in the limited worker processes."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pypdf import PdfReader
from sqlalchemy import func, select

from meeting.models import Annotation
from server.demo import DemoCity
from server.files.runtime import runtime
from tests.conftest import MakeServer
from tests.meeting.conftest import Room, make_room, store_pdf
from tests.server.support import small_city

JOB = "meeting.annotations:write_annotations_file"


def ink(points: int, stroke_count: int = 1) -> dict[str, Any]:
    stroke = [[round(0.1 + i * 0.8 / points, 4), 0.5] for i in range(points)]
    return {"strokes": [stroke] * stroke_count, "color": "#ff0000", "width": 2}


@pytest.fixture
async def tight_room(make_server: MakeServer) -> AsyncIterator[Room]:
    server = await make_server(annotation_max_bytes=6_000, annotation_max_points_per_stroke=300)
    city: DemoCity = await small_city(server)
    async for made in make_room(server, city):
        yield made


async def on_agenda(room: Room) -> int:
    doc = await store_pdf(room.server, room.city.chair_id, "Báo cáo", pages=2)
    response = await room.chair.post(
        room.base + "/agenda", json={"title": "Báo cáo", "document_ids": [doc]}
    )
    assert response.status_code == 201, response.text
    return doc


async def stored(room: Room, doc: int, user_id: int | None = None) -> int:
    query = select(func.count()).select_from(Annotation).where(Annotation.file_id == doc)
    if user_id is not None:
        query = query.where(Annotation.user_id == user_id)
    async with room.server.ctx.read() as session:
        return int((await session.execute(query)).scalar_one())


async def test_a_reader_has_a_byte_budget_per_document(tight_room: Room) -> None:
    room = tight_room
    doc = await on_agenda(room)
    url = f"/api/v1/files/{doc}/annotations"
    accepted = 0
    while True:
        response = await room.delegates[0].post(
            url, json={"page": 1, "kind": "ink", "data": ink(100)}
        )
        if response.status_code != 201:
            break
        accepted += 1
        assert accepted < 20, "the budget was never reached"
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "annotations_too_large"
    assert accepted >= 1
    assert await stored(room, doc, room.delegate_ids[0]) == accepted
    # The budget is the reader's on this document: another reader still annotates.
    other = await room.delegates[1].post(url, json={"page": 1, "kind": "ink", "data": ink(100)})
    assert other.status_code == 201, other.text


async def test_a_stroke_has_at_most_the_set_number_of_points(tight_room: Room) -> None:
    room = tight_room
    doc = await on_agenda(room)
    url = f"/api/v1/files/{doc}/annotations"
    long = await room.delegates[0].post(url, json={"page": 1, "kind": "ink", "data": ink(301)})
    assert long.status_code == 422
    assert long.json()["error"]["code"] == "stroke_too_long"
    assert await stored(room, doc) == 0
    fits = await room.delegates[0].post(url, json={"page": 1, "kind": "ink", "data": ink(300)})
    assert fits.status_code == 201, fits.text


async def test_the_default_points_limit_refuses_the_5000_point_stroke(room: Room) -> None:
    doc = await on_agenda(room)
    response = await room.delegates[0].post(
        f"/api/v1/files/{doc}/annotations",
        json={
            "page": 1,
            "kind": "ink",
            "data": ink(room.server.settings.annotation_max_points_per_stroke + 1),
        },
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "stroke_too_long"


async def test_annotated_copy_is_built_in_a_worker_process(room: Room) -> None:
    doc = await on_agenda(room)
    url = f"/api/v1/files/{doc}/annotations"
    response = await room.delegates[0].post(
        url, json={"page": 2, "kind": "ink", "data": ink(50, 3)}
    )
    assert response.status_code == 201, response.text
    pool = runtime(room.server.ctx).stamp_pool
    before = pool.completed.get(JOB, 0)
    pdf = await room.delegates[0].get(f"/api/v1/files/{doc}/annotated.pdf")
    assert pdf.status_code == 200, pdf.text
    assert pool.completed.get(JOB, 0) == before + 1
    page = PdfReader(io.BytesIO(pdf.content)).pages[1]
    kinds = [a.get_object()["/Subtype"] for a in page.get("/Annots", [])]
    assert "/Ink" in kinds


async def test_a_failed_build_is_a_clear_refusal(make_server: MakeServer) -> None:
    # A time limit no worker can meet: the copy is refused, the server keeps answering.
    server = await make_server(pdf_stamp_timeout_secs=0.0001)
    city = await small_city(server)
    async for room in make_room(server, city):
        doc = await on_agenda(room)
        response = await room.delegates[0].get(f"/api/v1/files/{doc}/annotated.pdf")
        assert response.status_code == 422
        assert response.json()["error"]["code"] in ("stamp_failed", "annotation_failed")
        async with server.http() as client:
            assert (await client.get("/healthz")).status_code == 200
