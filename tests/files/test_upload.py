"""Uploads of real documents: stored once by content, counted, titled, audited."""

from __future__ import annotations

import hashlib
import io

import pytest
from pypdf import PdfReader
from sqlalchemy import select
from sqlalchemy.orm import undefer

from server.audit import AuditRecord
from server.files.models import StoredFile
from server.files.runtime import runtime
from tests.conftest import MakeServer
from tests.files import samples
from tests.files.conftest import seeded_token, stored, upload
from tests.harness import RunningServer, eventually

SHAPES = {
    "one_page": lambda: samples.text_pdf(1),
    "two_hundred_pages": lambda: samples.text_pdf(200, "Báo cáo thẩm tra"),
    "vietnamese": lambda: samples.text_pdf(2, samples.VIETNAMESE, title="Tờ trình số 12"),
    "images": samples.image_pdf,
    "form": samples.form_pdf,
    "owner_password_only": lambda: samples.encrypted_pdf(user_password=""),
    "cropped_and_rotated": samples.cropped_pdf,
}


@pytest.mark.parametrize("shape", list(SHAPES))
async def test_pdf_shapes_upload_render_and_stamp(
    server: RunningServer, tokens: dict[str, str], shape: str
) -> None:
    data = SHAPES[shape]()
    expected_pages = len(PdfReader(io.BytesIO(data)).pages)
    before = await stored(server)
    async with server.http(tokens["delegate001"]) as client:
        response = await upload(client, data, name=f"{shape}.pdf")
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["pages"] == expected_pages
        assert body["size"] == len(data)
        assert body["sha256"] == hashlib.sha256(data).hexdigest()
        assert body["content_type"] == "application/pdf"
        assert body["name"] == f"{shape}.pdf"
        file_id = body["id"]

        # Render the first and the last page.
        for page in sorted({1, expected_pages}):
            png = await client.get(f"/api/v1/files/{file_id}/pages/{page}.png?width=400")
            assert png.status_code == 200, png.text
            assert png.headers["content-type"] == "image/png"
            assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
            assert int.from_bytes(png.content[16:20], "big") == 400

        # The reader's stamped copy: same pages, the reader's name on every one.
        copy = await client.get(f"/api/v1/files/{file_id}")
        assert copy.status_code == 200
        reader = PdfReader(io.BytesIO(copy.content))
        assert len(reader.pages) == expected_pages
        me = (await client.get("/api/v1/me")).json()
        for page in reader.pages:
            assert me["display_name"] in page.extract_text()
    after = await stored(server)
    assert after.rows == before.rows + 1
    assert after.upload_audits == before.upload_audits + 1
    await runtime(server.ctx).settled()


async def test_vietnamese_text_and_title_are_extracted(
    server: RunningServer, tokens: dict[str, str]
) -> None:
    data = samples.text_pdf(2, samples.VIETNAMESE, title="Tờ trình số 12")
    async with server.http(tokens["delegate001"]) as client:
        response = await upload(client, data, name="Tờ trình số 12.pdf")
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "Tờ trình số 12.pdf"
    file_id = response.json()["id"]

    async def text_read() -> StoredFile | None:
        async with server.ctx.read() as session:
            row = await session.get(StoredFile, file_id, options=[undefer(StoredFile.text)])
        assert row is not None
        return row if not row.text_pending else None

    # The title is read with the upload's checks; the text once the upload is answered.
    row = await eventually(text_read, what="the text of the upload read", timeout=30)
    assert row.title == "Tờ trình số 12"
    assert samples.VIETNAMESE in row.text
    assert "Trang 2" in row.text
    await runtime(server.ctx).settled()


async def test_same_bytes_are_stored_once_with_a_row_per_upload(
    server: RunningServer, tokens: dict[str, str]
) -> None:
    data = samples.text_pdf(1, "Công văn số 45")
    before = await stored(server)
    ids = []
    for user in ("delegate001", "delegate002"):
        async with server.http(tokens[user]) as client:
            response = await upload(client, data)
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
    assert ids[0] != ids[1]
    after = await stored(server)
    assert after.rows == before.rows + 2
    sha = hashlib.sha256(data).hexdigest()
    blobs = [
        path for path in after.files_on_disk - before.files_on_disk if path.startswith("blobs/")
    ]
    assert blobs == [f"blobs/{sha[:2]}/{sha}"]
    async with server.ctx.read() as session:
        audits = (
            (
                await session.execute(
                    select(AuditRecord)
                    .where(AuditRecord.action == "file.upload")
                    .order_by(AuditRecord.seq.desc())
                    .limit(2)
                )
            )
            .scalars()
            .all()
        )
    assert sorted(record.details["file_id"] for record in audits) == sorted(ids)
    assert {record.details["sha256"] for record in audits} == {sha}
    await runtime(server.ctx).settled()


async def test_first_pages_are_rendered_ahead_after_upload(make_server: MakeServer) -> None:
    server = await make_server(render_ahead_pages=3, render_default_width=320)
    token = await seeded_token(server, "delegate001")
    data = samples.text_pdf(10)
    sha = hashlib.sha256(data).hexdigest()
    async with server.http(token) as client:
        response = await upload(client, data)
        assert response.status_code == 201, response.text
        rt = runtime(server.ctx)
        await rt.settled()
        renders = sorted(p.name for p in rt.store.render_path(sha, 1, 320).parent.iterdir())
        assert renders == ["1-320.png", "2-320.png", "3-320.png"]
        done = rt.renders_done
        # A tablet opening the document gets the pages already rendered.
        page = await client.get(f"/api/v1/files/{response.json()['id']}/pages/2.png")
        assert page.status_code == 200
        assert int.from_bytes(page.content[16:20], "big") == 320
        assert rt.renders_done == done
