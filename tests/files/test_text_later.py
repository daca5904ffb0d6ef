"""The text of an uploaded PDF is read after the upload is answered: searchable shortly
after, also where the file was attached before its text was read, and after a restart
that came while its text was still to be read."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.orm import undefer

from server.demo import DemoCity, seed_demo
from server.files.models import StoredFile
from server.files.runtime import runtime
from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.files import samples
from tests.files.conftest import upload
from tests.harness import RunningServer, eventually
from tests.messaging.support import directive_body, issue, token

WORDS = "Phương án phòng chống lụt bão"


async def _search(server: RunningServer, user_token: str, q: str) -> list[int]:
    async with server.http(user_token) as http:
        response = await http.get("/api/v1/search", params={"q": q})
    assert response.status_code == 200, response.text
    return [r["file_id"] for r in response.json()["results"] if r["kind"] == "attachment"]


async def _row(server: RunningServer, file_id: int) -> StoredFile:
    async with server.ctx.read() as session:
        row = await session.get(StoredFile, file_id, options=[undefer(StoredFile.text)])
    assert row is not None
    return row


async def _upload(server: RunningServer, user_token: str) -> dict[str, Any]:
    async with server.http(user_token) as client:
        response = await upload(client, samples.text_pdf(3, WORDS), name="phuong-an.pdf")
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _text_read(server: RunningServer, file_id: int) -> StoredFile | None:
    row = await _row(server, file_id)
    return row if not row.text_pending else None


async def _forget_text(server: RunningServer, file_id: int) -> None:
    """Leave the file as an upload whose text has not been read yet."""
    async with server.ctx.write() as w:
        await w.session.execute(
            update(StoredFile).where(StoredFile.id == file_id).values(text="", text_pending=True)
        )


async def test_text_is_read_after_the_upload_and_becomes_searchable(
    server: RunningServer, city: DemoCity
) -> None:
    standing = await token(server, "standing")
    ward = await token(server, "ward001")
    body = await _upload(server, standing)
    assert body["pages"] == 3 and "text" not in body
    row = await eventually(
        lambda: _text_read(server, body["id"]), what="the text of the upload read", timeout=30
    )
    assert WORDS in row.text and "Trang 3" in row.text
    assert runtime(server.ctx).text_pool.completed == {"extract_text": 1}
    assert "extract_text" not in runtime(server.ctx).parse_pool.completed
    await issue(
        server, standing, directive_body(city.commune_unit_ids[:1], attachment_ids=[body["id"]])
    )
    assert await _search(server, ward, "lut bao") == [body["id"]]
    await runtime(server.ctx).settled()


async def test_a_file_attached_before_its_text_is_read_is_found_once_it_is(
    server: RunningServer, city: DemoCity
) -> None:
    standing = await token(server, "standing")
    ward = await token(server, "ward001")
    body = await _upload(server, standing)
    file_id = body["id"]
    await eventually(lambda: _text_read(server, file_id), what="the first reading", timeout=30)
    await _forget_text(server, file_id)
    await issue(
        server, standing, directive_body(city.commune_unit_ids[:1], attachment_ids=[file_id])
    )
    # Attached, found by its name, not yet by its text.
    assert await _search(server, ward, "phuong") == [file_id]
    assert await _search(server, ward, "lut bao") == []
    runtime(server.ctx).read_text_later(file_id)

    async def found() -> bool:
        return await _search(server, ward, "lut bao") == [file_id]

    await eventually(found, what="the attached file found by its text", timeout=30)
    await runtime(server.ctx).settled()


async def test_text_left_unread_by_a_stopped_server_is_read_at_the_next_start(
    make_server: MakeServer,
) -> None:
    first = await make_server(render_ahead_pages=0)
    await seed_demo(first.ctx, password=DEMO_PASSWORD, communes=2, delegates=2)
    standing = await first.login("standing", DEMO_PASSWORD)
    file_id = (await _upload(first, standing))["id"]
    await eventually(lambda: _text_read(first, file_id), what="the first reading", timeout=30)
    # As a server stopped between the upload and the reading of its text leaves it.
    await _forget_text(first, file_id)
    await first.stop()
    second = await make_server(render_ahead_pages=0)
    row = await eventually(
        lambda: _text_read(second, file_id), what="the text read after the restart", timeout=30
    )
    assert WORDS in row.text


async def test_a_pdf_whose_text_cannot_be_read_is_kept_without_text(
    make_server: MakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dienhong.files.text")
    server = await make_server(pdf_text_timeout_secs=1.0, render_ahead_pages=0)
    await seed_demo(server.ctx, password=DEMO_PASSWORD, communes=2, delegates=2)
    standing = await server.login("standing", DEMO_PASSWORD)
    file_id = (await _upload(server, standing))["id"]
    await eventually(lambda: _text_read(server, file_id), what="the first reading", timeout=30)
    # Its content is gone from this node: the text stays to be read by a node that has it.
    rt = runtime(server.ctx)
    row = await _row(server, file_id)
    blob = rt.store.blob_path(row.sha256)
    kept = blob.read_bytes()
    blob.unlink()
    await _forget_text(server, file_id)
    rt.read_text_later(file_id)
    await eventually(
        lambda: "is not on this node" in caplog.text, what="the missing content seen", timeout=30
    )
    assert (await _row(server, file_id)).text_pending
    # A content pdfium refuses: stored without text, no longer pending.
    blob.write_bytes(b"%PDF-1.4\n" + b"x" * 100)
    rt.read_text_later(file_id)
    row = await eventually(lambda: _text_read(server, file_id), what="given up", timeout=30)
    assert row.text == ""
    blob.write_bytes(kept)
