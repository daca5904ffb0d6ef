"""Every bad upload gets its documented error, and nothing is stored: no row, no audit
record, no file on disk (not even a temporary one)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from server.files.runtime import runtime
from tests.conftest import MakeServer
from tests.files import samples
from tests.files.conftest import seeded_token, stored, upload
from tests.harness import RunningServer


def truncated_pdf() -> bytes:
    data = samples.text_pdf(3)
    return data[: len(data) // 2]


# name: (bytes, filename, declared type, status, code)
BAD_FILES: dict[str, tuple[Callable[[], bytes], str, str, int, str]] = {
    "empty_file": (lambda: b"", "rong.pdf", "application/pdf", 422, "empty_file"),
    "not_a_pdf": (
        lambda: "Đây không phải PDF".encode() * 50,
        "gia.pdf",
        "application/pdf",
        422,
        "invalid_pdf",
    ),
    "truncated_pdf": (truncated_pdf, "cut.pdf", "application/pdf", 422, "invalid_pdf"),
    "cyclic_page_tree": (samples.cyclic_pdf, "vong.pdf", "application/pdf", 422, "invalid_pdf"),
    "decompression_bomb": (
        lambda: samples.bomb_pdf(80),
        "bom.pdf",
        "application/pdf",
        422,
        "invalid_pdf",
    ),
    "image_bomb": (samples.image_bomb_pdf, "anh.pdf", "application/pdf", 422, "invalid_pdf"),
    "password_protected": (samples.encrypted_pdf, "mat.pdf", "application/pdf", 422, "invalid_pdf"),
    "executable_type": (
        lambda: b"MZ\x90\x00" * 64,
        "setup.exe",
        "application/x-msdownload",
        422,
        "unsupported_type",
    ),
    "svg_type": (
        lambda: b"<svg onload='alert(1)'/>",
        "a.svg",
        "image/svg+xml",
        422,
        "unsupported_type",
    ),
    "unknown_generic": (
        lambda: b"\x00\x01\x02" * 100,
        "data.bin",
        "application/octet-stream",
        422,
        "unsupported_type",
    ),
    "png_that_is_text": (
        lambda: b"hello" * 20,
        "anh.png",
        "image/png",
        422,
        "content_type_mismatch",
    ),
    "pdf_declared_as_png": (
        lambda: samples.text_pdf(1),
        "anh.png",
        "image/png",
        422,
        "content_type_mismatch",
    ),
    "docx_with_macros": (
        lambda: samples.docx_bytes(macros=True),
        "macro.docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        422,
        "content_type_mismatch",
    ),
    "text_that_is_binary": (
        lambda: b"\xff\xfe\x00\x00binary",
        "notes.txt",
        "text/plain",
        422,
        "content_type_mismatch",
    ),
}


@pytest.fixture
async def client(server: RunningServer, city: object) -> AsyncIterator[httpx.AsyncClient]:
    from tests.conftest import DEMO_PASSWORD

    token = await server.login("delegate001", DEMO_PASSWORD)
    async with server.http(token) as http:
        yield http


async def test_each_bad_file_is_refused_with_its_code_and_nothing_stored(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    # A good upload first, so "nothing changed" is measured against a store in use.
    good = await upload(client, samples.text_pdf(1))
    assert good.status_code == 201
    await runtime(server.ctx).settled()
    for case, (make, name, declared, status, code) in BAD_FILES.items():
        before = await stored(server)
        response = await upload(client, make(), name=name, content_type=declared)
        assert response.status_code == status, (case, response.text)
        assert response.json()["error"]["code"] == code, (case, response.text)
        assert await stored(server) == before, case


async def test_missing_field_and_malformed_bodies(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    before = await stored(server)
    cases = [
        (
            {"files": {"other": ("a.pdf", samples.text_pdf(1), "application/pdf")}},
            400,
            "missing_file",
        ),
        (
            {"data": {"title": "không có tệp"}, "files": {"x": ("", b"", "text/plain")}},
            400,
            "missing_file",
        ),
        ({"json": {"file": "abc"}}, 400, "invalid_multipart"),
        (
            {
                "content": b'--zz\r\nContent-Disposition: form-data; name="file"; '
                b'filename="a.pdf"\r\n\r\n%PDF-1.7 truncated',
                "headers": {"content-type": "multipart/form-data; boundary=zz"},
            },
            400,
            "invalid_multipart",
        ),
        (
            {
                "files": [
                    ("file", ("a.pdf", samples.text_pdf(1), "application/pdf")),
                    ("file", ("b.pdf", samples.text_pdf(1), "application/pdf")),
                ]
            },
            400,
            "invalid_multipart",
        ),
    ]
    for kwargs, status, code in cases:
        response = await client.post("/api/v1/files", **kwargs)  # type: ignore[arg-type]
        assert response.status_code == status, (kwargs.keys(), response.text)
        assert response.json()["error"]["code"] == code, response.text
    assert await stored(server) == before


async def test_upload_needs_a_signed_in_user(server: RunningServer) -> None:
    before = await stored(server)
    async with server.http() as anonymous:
        response = await upload(anonymous, samples.text_pdf(1))
    assert response.status_code == 401
    assert await stored(server) == before


async def test_over_the_limit_is_refused_while_streaming(make_server: MakeServer) -> None:
    limit = 200_000
    server = await make_server(max_upload_bytes=limit)
    token = await seeded_token(server, "delegate001")
    before = await stored(server)
    big = b"%PDF-1.7\n" + b"0" * (limit * 3)
    async with server.http(token) as client:
        # Declared length over the limit: refused before the body is read.
        response = await upload(client, big)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "too_large"
        assert await stored(server) == before

        # No declared length (chunked): refused once the limit is passed mid-stream.
        boundary = "dienhongboundary"

        async def body() -> AsyncIterator[bytes]:
            yield (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="big.pdf"\r\nContent-Type: application/pdf\r\n\r\n'
            ).encode()
            for offset in range(0, len(big), 16_384):
                yield big[offset : offset + 16_384]
            yield f"\r\n--{boundary}--\r\n".encode()

        response = await client.post(
            "/api/v1/files",
            content=body(),
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        )
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "too_large"
        assert await stored(server) == before

        # Exactly at the limit is fine.
        at_limit = samples.text_pdf(1)
        at_limit += b"\n%" + b"x" * (limit - len(at_limit) - 2)
        assert len(at_limit) == limit
        response = await upload(client, at_limit)
        assert response.status_code == 201, response.text
    await runtime(server.ctx).settled()
