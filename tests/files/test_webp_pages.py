"""Page images in WebP at the width the tablet asks for, snapped to shared steps."""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image

from server.files.routes import snapped_width, width_steps
from server.files.runtime import runtime
from server.settings import Settings
from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.files import samples
from tests.files.conftest import seeded_token, upload
from tests.files.test_reading import png_size
from tests.harness import RunningServer


async def _upload_pdf(client: httpx.AsyncClient, pages: int = 2) -> int:
    response = await upload(client, samples.text_pdf(pages))
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def test_widths_snap_up_to_the_next_step() -> None:
    steps = width_steps(Settings())
    assert snapped_width(16, steps) == steps[0]
    assert snapped_width(1100, steps) == 1280
    assert snapped_width(1280, steps) == 1280
    assert snapped_width(2400, steps) == 2400
    odd = Settings(render_width_steps=("900", "x", "0", "99999", "300"), render_max_width=2400)
    assert width_steps(odd) == [300, 900]
    assert width_steps(Settings(render_width_steps=())) == [Settings().render_default_width]


async def test_a_page_in_webp_at_the_asked_width(server: RunningServer) -> None:
    token = await seeded_token(server, "delegate001")
    async with server.http(token) as client:
        file_id = await _upload_pdf(client)
        answer = await client.get(f"/api/v1/files/{file_id}/pages/1.webp?width=1200")
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "image/webp"
        assert answer.headers["x-page-width"] == "1280"
        assert "private" in answer.headers["cache-control"]
        image = Image.open(io.BytesIO(answer.content))
        assert image.format == "WEBP"
        assert image.width == 1280
        # A typical text page at 1280 px stays light on the hall's Wi-Fi.
        assert len(answer.content) <= 60 * 1024
        png = await client.get(f"/api/v1/files/{file_id}/pages/1.png?width=1280")
        assert png.headers["content-type"] == "image/png"
        assert png_size(png.content)[0] == 1280
        assert answer.headers["etag"] != png.headers["etag"]
        again = await client.get(
            f"/api/v1/files/{file_id}/pages/1.webp?width=1100",
            headers={"If-None-Match": answer.headers["etag"]},
        )
        assert again.status_code == 304
        cached = await client.get(f"/api/v1/files/{file_id}/pages/1.webp?width=1280")
        assert cached.content == answer.content
    await runtime(server.ctx).settled()


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("1.webp?width=abc", 400, "invalid_width"),
        ("1.webp?width=8", 400, "invalid_width"),
        ("1.webp?width=99999", 400, "invalid_width"),
        ("1.webp?width=-5", 400, "invalid_width"),
        ("9.webp", 404, "page_not_found"),
        ("1.gif", 404, "not_found"),
        ("1.jpeg?width=640", 404, "not_found"),
    ],
)
async def test_bad_widths_and_formats_are_refused(
    server: RunningServer, path: str, status: int, code: str
) -> None:
    token = await seeded_token(server, "delegate001")
    async with server.http(token) as client:
        file_id = await _upload_pdf(client)
        answer = await client.get(f"/api/v1/files/{file_id}/pages/{path}")
        assert answer.status_code == status, answer.text
        assert answer.json()["error"]["code"] == code
    await runtime(server.ctx).settled()
    # Nothing was rendered for a refused request.
    assert list(runtime(server.ctx).store.renders.glob("*/*/*.webp")) == []


async def test_behind_a_proxy_the_answer_names_the_cached_image(make_server: MakeServer) -> None:
    server = await make_server(accel_redirect_prefix="/_dienhong_renders/")
    token = await seeded_token(server, "delegate001")
    async with server.http(token) as client:
        file_id = await _upload_pdf(client)
        answer = await client.get(f"/api/v1/files/{file_id}/pages/2.webp?width=640")
        assert answer.status_code == 200
        assert answer.content == b""
        target = answer.headers["x-accel-redirect"]
        assert target.startswith("/_dienhong_renders/") and target.endswith("/2-640.webp")
        on_disk = runtime(server.ctx).store.renders / target.removeprefix("/_dienhong_renders/")
        with Image.open(on_disk) as image:
            assert image.width == 640
        stranger = await server.login("delegate002", DEMO_PASSWORD)
    async with server.http(stranger) as client:
        refused = await client.get(f"/api/v1/files/{file_id}/pages/2.webp?width=640")
        assert refused.status_code == 404
        assert "x-accel-redirect" not in refused.headers
    await runtime(server.ctx).settled()


async def test_a_warm_page_is_answered_from_memory(make_server: MakeServer) -> None:
    server = await make_server(render_memory_cache_bytes=8 * 1024 * 1024)
    token = await seeded_token(server, "delegate001")
    async with server.http(token) as client:
        file_id = await _upload_pdf(client)
        path = f"/api/v1/files/{file_id}/pages/2.webp?width=800"
        first = await client.get(path)
        assert first.status_code == 200
        rt = runtime(server.ctx)
        await rt.settled()
        renders = rt.renders_done
        # The render cache on disk is only a cache: gone, the page still comes from memory.
        for image in rt.store.renders.glob("*/*/2-800.webp"):
            image.unlink()
        again = await client.get(path)
        assert again.status_code == 200 and again.content == first.content
        assert rt.renders_done == renders
        # Without memory for pages, the same loss means a new render.
        other = await make_server(render_memory_cache_bytes=0)
    async with other.http(token) as client:
        for image in rt.store.renders.glob("*/*/2-800.webp"):
            image.unlink()
        fresh = await client.get(path)
        assert fresh.status_code == 200
        assert runtime(other.ctx).renders_done == 1
    await runtime(other.ctx).settled()


def test_text_pages_are_lossless_and_photographs_lossy() -> None:
    import random

    from server.files.rendering import webp_bytes

    text = Image.new("RGB", (400, 300), "white")
    for y in range(20, 280, 14):
        for x in range(20, 380, 7):
            text.putpixel((x, y), (0, 0, 0))
    with Image.open(io.BytesIO(webp_bytes(text, 80))) as decoded:
        assert decoded.convert("RGB").tobytes() == text.tobytes()
    noise = random.Random(19)
    photo = Image.frombytes(
        "RGB", (400, 300), bytes(noise.randrange(256) for _ in range(400 * 300 * 3))
    )
    lossy = webp_bytes(photo, 80)
    with Image.open(io.BytesIO(lossy)) as decoded:
        assert decoded.convert("RGB").tobytes() != photo.tobytes()
    assert len(lossy) * 8 < 400 * 300 * 24
