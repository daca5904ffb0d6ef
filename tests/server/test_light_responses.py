"""Light answers for tablets on a crowded Wi-Fi: compression and cache lifetimes."""

from __future__ import annotations

import gzip
import re

import brotli
import pytest

from server.compression import chosen_encoding
from server.demo import DemoCity
from server.static_assets import IMMUTABLE_CACHE_CONTROL
from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.files import samples
from tests.files.conftest import upload
from tests.harness import RunningServer

IMMUTABLE = IMMUTABLE_CACHE_CONTROL


def test_accept_encoding_is_read_with_its_weights() -> None:
    assert chosen_encoding("gzip, deflate, br") == "br"
    assert chosen_encoding("gzip;q=1, br;q=0") == "gzip"
    assert chosen_encoding("identity") is None
    assert chosen_encoding("") is None
    assert chosen_encoding("*") == "br"
    assert chosen_encoding("gzip;q=bad") is None


async def test_pages_and_api_answers_are_compressed(server: RunningServer) -> None:
    async with server.http() as client:
        for encoding, decode in (("gzip", gzip.decompress), ("br", brotli.decompress)):
            page = await client.get("/app/", headers={"Accept-Encoding": encoding})
            assert page.status_code == 200
            assert page.headers["content-encoding"] == encoding
            assert "Accept-Encoding" in page.headers["vary"]
            assert "<html" in page.text.lower()
            # The security headers stay on compressed answers.
            assert "content-security-policy" in page.headers
            raw = await client.get("/api/v1/openapi.json", headers={"Accept-Encoding": encoding})
            assert raw.headers["content-encoding"] == encoding
            assert raw.json()["openapi"].startswith("3.")
            stream = client.stream("GET", "/app/css/app.css", headers={"Accept-Encoding": encoding})
            async with stream as css:
                body = b"".join([chunk async for chunk in css.aiter_raw()])
            assert css.headers["content-encoding"] == encoding
            assert b"@font-face" in decode(body)
            assert len(body) < len(decode(body)) / 2


async def test_small_answers_and_clients_without_encodings_get_plain_bytes(
    server: RunningServer,
) -> None:
    async with server.http() as client:
        small = await client.get("/healthz", headers={"Accept-Encoding": "gzip"})
        assert "content-encoding" not in small.headers
        assert "Accept-Encoding" in small.headers["vary"]
        plain = await client.get("/app/", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers
        assert "Accept-Encoding" in plain.headers["vary"]
        assert int(plain.headers["content-length"]) == len(plain.content)


async def test_compression_can_be_turned_off(make_server: MakeServer) -> None:
    server = await make_server(compress_min_bytes=0)
    async with server.http() as client:
        page = await client.get("/app/", headers={"Accept-Encoding": "gzip, br"})
        assert "content-encoding" not in page.headers


async def test_pdfs_images_and_fonts_are_never_compressed_again(
    server: RunningServer, city: DemoCity
) -> None:
    token = await server.login("delegate001", DEMO_PASSWORD)
    async with server.http(token) as client:
        created = await upload(client, samples.text_pdf(2))
        file_id = created.json()["id"]
        pdf = await client.get(f"/api/v1/files/{file_id}", headers={"Accept-Encoding": "gzip"})
        assert pdf.status_code == 200
        assert pdf.content.startswith(b"%PDF")
        assert "content-encoding" not in pdf.headers
        assert "vary" not in pdf.headers
        image = await client.get(
            f"/api/v1/files/{file_id}/pages/1.webp?width=640",
            headers={"Accept-Encoding": "gzip, br"},
        )
        assert "content-encoding" not in image.headers
        font = await client.get(
            "/app/fonts/DejaVuSans.woff2", headers={"Accept-Encoding": "gzip, br"}
        )
        assert font.status_code == 200
        assert font.headers["content-type"] == "font/woff2"
        assert font.content[:4] == b"wOF2"
        assert "content-encoding" not in font.headers


async def test_the_websocket_is_not_compressed(server: RunningServer, city: DemoCity) -> None:
    token = await server.login("delegate001", DEMO_PASSWORD)
    async with server.socket(
        token, compression=None, additional_headers={"Accept-Encoding": "gzip, br"}
    ) as ws:
        assert ws.ready["op"] == "ready"


async def test_hashed_asset_urls_resolve_and_are_cached_for_a_year(server: RunningServer) -> None:
    async with server.http() as client:
        page = await client.get("/app/delegate/")
        assert page.headers["cache-control"] == "no-cache"
        assets = re.findall(r'(?:src|href)="(/app/[^"]+\?v=[0-9a-f]{12})"', page.text)
        assert any(a.startswith("/app/css/app.css?v=") for a in assets), page.text
        assert any(a.startswith("/app/js/delegate.js?v=") for a in assets), page.text
        for asset in assets:
            answer = await client.get(asset)
            assert answer.status_code == 200, asset
            assert answer.headers["cache-control"] == IMMUTABLE, asset
        css_url = next(a for a in assets if a.startswith("/app/css/app.css"))
        css = (await client.get(css_url)).text
        fonts = re.findall(r'url\("(\.\./fonts/[^"]+\?v=[0-9a-f]{12})"\)', css)
        assert any(".woff2?" in font for font in fonts), css
        for font in fonts:
            answer = await client.get("/app/css/" + font)
            assert answer.status_code == 200
            assert answer.headers["cache-control"] == IMMUTABLE
        # Every module imports its neighbours under the one version the page names.
        script_url = next(a for a in assets if a.startswith("/app/js/delegate.js"))
        version = script_url.rsplit("=", 1)[1]
        script = (await client.get(script_url)).text
        imports = re.findall(r'from\s*"(\.{1,2}/[^"]+)"', script)
        assert imports and all(i.endswith(f".js?v={version}") for i in imports), imports
        # An unversioned or outdated URL is revalidated, never pinned for a year.
        for stale in ("/app/css/app.css", "/app/css/app.css?v=000000000000"):
            answer = await client.get(stale)
            assert answer.status_code == 200
            assert answer.headers["cache-control"] == "no-cache"
        again = await client.get("/app/delegate/", headers={"If-None-Match": page.headers["etag"]})
        assert again.status_code == 304


@pytest.mark.parametrize("path", ["/app/js/missing.js?v=abc", "/app/fonts/none.woff2"])
async def test_unknown_assets_are_404(server: RunningServer, path: str) -> None:
    async with server.http() as client:
        assert (await client.get(path)).status_code == 404


async def test_a_file_the_server_sends_itself_goes_as_it_is() -> None:
    from server.compression import Compression

    async def app(scope: dict, receive: object, send: object) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,  # type: ignore[operator]
                "headers": [(b"content-type", b"text/css")],
            }
        )
        await send({"type": "http.response.pathsend", "path": "/x.css"})  # type: ignore[operator]

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.request"}

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/app/x.css",
        "headers": [(b"accept-encoding", b"gzip")],
    }
    await Compression(app, minimum_size=10)(scope, receive, send)  # type: ignore[arg-type]
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.pathsend"]
    assert b"content-encoding" not in dict(sent[0]["headers"])
