"""Annotations: private and shared, checked per kind, written into a real PDF."""

from __future__ import annotations

import io
from typing import Any

import pytest
from pypdf import PdfReader
from sqlalchemy import func, select

from meeting.models import Annotation
from tests.meeting.conftest import Room, store_pdf

INK = {"strokes": [[[0.1, 0.1], [0.2, 0.15], [0.3, 0.1]]], "color": "#ff0000", "width": 3}
HIGHLIGHT = {"rects": [[0.1, 0.2, 0.9, 0.25]]}
NOTE = {"x": 0.5, "y": 0.5, "text": "Đề nghị làm rõ số liệu ở mục 2"}


async def on_agenda(room: Room, pages: int = 3) -> int:
    doc = await store_pdf(room.server, room.city.chair_id, "Báo cáo", pages=pages)
    response = await room.chair.post(
        room.base + "/agenda", json={"title": "Báo cáo", "document_ids": [doc]}
    )
    assert response.status_code == 201, response.text
    return doc


async def annotate(room: Room, index: int, doc: int, **body: Any) -> dict[str, Any]:
    response = await room.delegates[index].post(f"/api/v1/files/{doc}/annotations", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_private_and_shared(room: Room) -> None:
    doc = await on_agenda(room)
    private = await annotate(room, 0, doc, page=1, kind="ink", data=INK)
    assert private["shared"] is False and private["meeting_id"] is None
    async with room.server.socket(room.tokens["delegate002"]) as ws:
        await ws.subscribe({f"meeting:{room.meeting_id}": (await room.state())["seq"]})
        shared = await annotate(room, 0, doc, page=2, kind="note", data=NOTE, shared=True)
        event = await ws.next_event("annotation.shared")
        assert event["data"]["annotation"]["id"] == shared["id"]
    assert shared["meeting_id"] == room.meeting_id
    mine = (await room.delegates[0].get(f"/api/v1/files/{doc}/annotations")).json()
    assert [a["id"] for a in mine["annotations"]] == [private["id"], shared["id"]]
    theirs = (await room.delegates[1].get(f"/api/v1/files/{doc}/annotations")).json()
    assert [a["id"] for a in theirs["annotations"]] == [shared["id"]]
    response = await room.outsider.get(f"/api/v1/files/{doc}/annotations")
    assert response.status_code == 404
    # Only the author removes an annotation.
    response = await room.delegates[1].delete(f"/api/v1/files/{doc}/annotations/{shared['id']}")
    assert response.status_code == 404
    response = await room.delegates[0].delete(f"/api/v1/files/{doc}/annotations/{shared['id']}")
    assert response.status_code == 204
    theirs = (await room.delegates[1].get(f"/api/v1/files/{doc}/annotations")).json()
    assert theirs["annotations"] == []


async def test_annotated_pdf_has_real_annotations(room: Room) -> None:
    doc = await on_agenda(room)
    await annotate(room, 0, doc, page=1, kind="ink", data=INK)
    await annotate(room, 0, doc, page=1, kind="highlight", data=HIGHLIGHT)
    await annotate(room, 0, doc, page=3, kind="note", data=NOTE, shared=True)
    await annotate(
        room, 1, doc, page=2, kind="note", data={**NOTE, "text": "Của người khác"}, shared=True
    )
    response = await room.delegates[0].get(f"/api/v1/files/{doc}/annotated.pdf")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    reader = PdfReader(io.BytesIO(response.content))
    assert len(reader.pages) == 3
    # It is the reader's stamped copy.
    name = next(
        p["display_name"]
        for p in (await room.state())["participants"]
        if p["user_id"] == room.delegate_ids[0]
    )
    assert name in reader.pages[0].extract_text()

    def annots(page: int) -> list[Any]:
        raw = reader.pages[page - 1].get("/Annots")
        return [a.get_object() for a in raw] if raw else []

    first = {a["/Subtype"]: a for a in annots(1)}
    assert set(first) == {"/Ink", "/Highlight"}
    ink = first["/Ink"]
    height = float(reader.pages[0].mediabox.height)
    width = float(reader.pages[0].mediabox.width)
    points = [float(v) for v in ink["/InkList"][0]]
    assert points[0] == pytest.approx(0.1 * width, abs=0.01)
    assert points[1] == pytest.approx(height - 0.1 * height, abs=0.01)
    assert [float(c) for c in ink["/C"]] == [1.0, 0.0, 0.0]
    assert len(first["/Highlight"]["/QuadPoints"]) == 8
    # Only the reader's own marks unless asked for the shared ones too.
    assert annots(2) == []
    notes = annots(3)
    assert [a["/Subtype"] for a in notes] == ["/Text"]
    assert notes[0]["/Contents"] == NOTE["text"]
    response = await room.delegates[0].get(f"/api/v1/files/{doc}/annotated.pdf?shared=1")
    reader = PdfReader(io.BytesIO(response.content))
    assert [a.get_object()["/Contents"] for a in reader.pages[1]["/Annots"]] == ["Của người khác"]
    response = await room.outsider.get(f"/api/v1/files/{doc}/annotated.pdf")
    assert response.status_code == 404


async def count(room: Room) -> int:
    async with room.server.ctx.read() as session:
        return int(
            (await session.execute(select(func.count()).select_from(Annotation))).scalar_one()
        )


BAD_ANNOTATIONS: list[tuple[dict[str, Any], int, str]] = [
    ({"page": 4, "kind": "ink", "data": INK}, 422, "page_out_of_range"),
    ({"page": 0, "kind": "ink", "data": INK}, 400, "invalid_request"),
    ({"page": 1, "kind": "scribble", "data": INK}, 400, "invalid_request"),
    ({"page": 1, "kind": "ink", "data": HIGHLIGHT}, 400, "invalid_request"),
    ({"page": 1, "kind": "ink", "data": {"strokes": [[[1.5, 0.1]]]}}, 400, "invalid_request"),
    ({"page": 1, "kind": "highlight", "data": {"rects": []}}, 400, "invalid_request"),
    ({"page": 1, "kind": "note", "data": {"x": 0.1, "y": 0.1, "text": ""}}, 400, "invalid_request"),
    ({"page": 1, "kind": "note", "data": {**NOTE, "color": "red"}}, 400, "invalid_request"),
    ({"page": 1, "kind": "ink", "data": {"strokes": [[[0.1, 0.1]] * 3000] * 3}}, 413, "too_large"),
    (
        {"page": 1, "kind": "note", "data": NOTE, "shared": True, "meeting_id": 999999},
        422,
        "not_shared_in_meeting",
    ),
    ({"page": 1, "kind": "note", "data": NOTE, "shared": "yes"}, 400, "invalid_request"),
]


async def test_bad_annotations_store_nothing(room: Room) -> None:
    doc = await on_agenda(room)
    before = await count(room)
    for body, status, code in BAD_ANNOTATIONS:
        response = await room.delegates[0].post(f"/api/v1/files/{doc}/annotations", json=body)
        assert response.status_code == status, (body["kind"], response.text[:300])
        assert response.json()["error"]["code"] == code, body["kind"]
    assert await count(room) == before


async def test_cannot_annotate_or_share_what_one_cannot_read(room: Room) -> None:
    doc = await on_agenda(room)
    own = await store_pdf(room.server, room.delegate_ids[0], "Ghi chú riêng", pages=1)
    before = await count(room)
    response = await room.outsider.post(
        f"/api/v1/files/{doc}/annotations", json={"page": 1, "kind": "note", "data": NOTE}
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "file_not_found"
    # One's own upload can be annotated privately but is on no agenda to share with.
    response = await room.delegates[0].post(
        f"/api/v1/files/{own}/annotations",
        json={"page": 1, "kind": "note", "data": NOTE, "shared": True},
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "not_shared_in_meeting"
    assert await count(room) == before
