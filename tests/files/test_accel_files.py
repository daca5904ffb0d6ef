"""Whole files named to the proxy (DIENHONG_ACCEL_REDIRECT_FILES_PREFIX): the node answers
with the headers and an ``X-Accel-Redirect`` to the bytes under the data directory's
``files/``; the proxy itself is tested in tests/deploy/test_nginx.py."""

from __future__ import annotations

from pathlib import Path

from pypdf import PdfReader

from server.files.runtime import runtime
from tests.conftest import MakeServer
from tests.files import samples
from tests.files.conftest import seeded_token, upload
from tests.harness import eventually

PREFIX = "/_dienhong_files/"


async def test_downloads_are_named_to_the_proxy(make_server: MakeServer) -> None:
    server = await make_server(accel_redirect_files_prefix=PREFIX)
    token = await seeded_token(server, "delegate001")
    files_root = Path(server.settings.data_dir) / "files"
    text = "Ghi chú cuộc họp\nNội dung".encode()
    async with server.http(token) as client:
        note = (await upload(client, text, name="ghi-chu.txt", content_type="text/plain")).json()
        pdf = (await upload(client, samples.text_pdf(2))).json()
        answer = await client.get(f"/api/v1/files/{note['id']}")
        assert answer.status_code == 200 and answer.content == b""
        assert answer.headers["content-type"].startswith("text/plain")
        assert answer.headers["content-disposition"].startswith('attachment; filename="ghi-chu')
        assert answer.headers["cache-control"] == "private, no-store"
        named = answer.headers["x-accel-redirect"]
        assert named.startswith(PREFIX + "blobs/")
        assert (files_root / named.removeprefix(PREFIX)).read_bytes() == text
        # A PDF: the reader's stamped copy, kept until the proxy has opened it.
        stamped = await client.get(f"/api/v1/files/{pdf['id']}")
        assert stamped.status_code == 200 and stamped.content == b""
        assert stamped.headers["content-type"] == "application/pdf"
        copy = files_root / stamped.headers["x-accel-redirect"].removeprefix(PREFIX)
        assert copy.parent == files_root / "tmp"
        reader = PdfReader(copy)
        assert reader.metadata is not None
        assert reader.metadata["/DienHongReaderUsername"] == "delegate001"
        # Refused before anything is named.
        anonymous = await client.get(f"/api/v1/files/{note['id']}", headers={"Authorization": ""})
        assert anonymous.status_code == 401 and "x-accel-redirect" not in anonymous.headers
    await runtime(server.ctx).settled()


async def test_a_stamped_copy_named_to_the_proxy_goes_after_its_grace(
    make_server: MakeServer,
) -> None:
    server = await make_server(
        accel_redirect_files_prefix=PREFIX, stamped_copy_grace_secs=2.0, render_ahead_pages=0
    )
    token = await seeded_token(server, "delegate001")
    files_root = Path(server.settings.data_dir) / "files"
    async with server.http(token) as client:
        pdf = (await upload(client, samples.text_pdf(1))).json()
        stamped = await client.get(f"/api/v1/files/{pdf['id']}")
    copy = files_root / stamped.headers["x-accel-redirect"].removeprefix(PREFIX)
    assert copy.is_file()
    await eventually(lambda: not copy.exists(), what="the stamped copy removed", timeout=15)
    await runtime(server.ctx).settled()
