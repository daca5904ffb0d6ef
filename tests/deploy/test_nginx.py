"""deploy/nginx/dienhong.conf in front of two nodes on PostgreSQL and Redis.

Signing in, the web client's files and sockets all go through nginx; an event written on
one node reaches a socket that nginx gave to the other.
"""

from __future__ import annotations

import io
import re

import httpx
import pytest
import websockets
from PIL import Image
from pypdf import PdfReader

from server.cli import uvicorn_options
from server.settings import Settings
from tests.conftest import DEMO_PASSWORD
from tests.deploy.cluster import NGINX_CONF, Cluster, open_sockets
from tests.harness import WsClient
from tests.server.test_nodes import Node, login

SOCKETS_TRIED = 8
# The prefixes deploy/dienhong.env.example sets: nginx's internal locations for page images
# and for whole files.
ACCEL_PREFIX = "/_dienhong_renders/"
ACCEL_FILES_PREFIX = "/_dienhong_files/"
ENV_EXAMPLE = NGINX_CONF.parent.parent / "dienhong.env.example"


@pytest.fixture
def node_settings() -> dict[str, str]:
    return {
        "DIENHONG_ACCEL_REDIRECT_PREFIX": ACCEL_PREFIX,
        "DIENHONG_ACCEL_REDIRECT_FILES_PREFIX": ACCEL_FILES_PREFIX,
    }


def env_example(name: str) -> str:
    match = re.search(rf"^{name}=(.*)$", ENV_EXAMPLE.read_text(), re.MULTILINE)
    assert match, f"no {name} in deploy/dienhong.env.example"
    return match.group(1)


def test_prefixes_match_the_env_example() -> None:
    assert env_example("DIENHONG_ACCEL_REDIRECT_PREFIX") == ACCEL_PREFIX
    assert env_example("DIENHONG_ACCEL_REDIRECT_FILES_PREFIX") == ACCEL_FILES_PREFIX
    for prefix in (ACCEL_PREFIX, ACCEL_FILES_PREFIX):
        block = NGINX_CONF.read_text().split(f"location {prefix} {{", 1)[1].split("}", 1)[0]
        assert "internal;" in block


def directive(name: str) -> str:
    match = re.search(rf"^\s*{name}\s+([^;]+);", NGINX_CONF.read_text(), re.MULTILINE)
    assert match, f"no {name} in deploy/nginx/dienhong.conf"
    return match.group(1)


def size_bytes(value: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    return int(value[:-1]) * units[value[-1].lower()] if value[-1].isalpha() else int(value)


async def redirect_of(cluster: Cluster, token: str, path: str) -> str:
    """Asked of a node directly: an empty answer naming where nginx finds the bytes."""
    async with httpx.AsyncClient(
        base_url=cluster.nodes[0].url, timeout=30, headers={"Authorization": f"Bearer {token}"}
    ) as direct:
        named = await direct.get(path)
    assert named.status_code == 200 and named.content == b""
    return named.headers["x-accel-redirect"]


def test_limits_match_the_server_defaults() -> None:
    defaults = Settings()
    body = size_bytes(directive("client_max_body_size"))
    # Room for the multipart envelope around one file at the server's limit, no more.
    assert defaults.max_upload_bytes < body <= defaults.max_upload_bytes + 2 * 1024**2
    socket_block = NGINX_CONF.read_text().split("location = /ws {", 1)[1].split("}", 1)[0]
    read = re.search(r"proxy_read_timeout\s+(\d+)s;", socket_block)
    assert read and int(read.group(1)) > defaults.ws_ping_interval_secs
    # nginx drops its idle connections to a node before the node would close them.
    idle = re.findall(r"^\s*keepalive_timeout\s+(\d+)s;", NGINX_CONF.read_text(), re.MULTILINE)
    assert len(idle) == NGINX_CONF.read_text().count("upstream dienhong_")
    assert all(int(secs) < defaults.http_keep_alive_secs for secs in idle)
    assert uvicorn_options(defaults)["timeout_keep_alive"] == defaults.http_keep_alive_secs


async def test_nginx_in_front_of_two_nodes(cluster: Cluster) -> None:
    nginx = cluster.nginx
    async with nginx.http() as client:
        # Plain HTTP is sent to HTTPS.
        plain = await client.get(f"http://127.0.0.1:{nginx.http_port}/app/", follow_redirects=False)
        assert plain.status_code == 301
        assert plain.headers["location"].startswith("https://")
        signed_in = await client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": DEMO_PASSWORD}
        )
        assert signed_in.status_code == 200, signed_in.text
        admin = signed_in.json()["access_token"]
        # The web client: pages revalidated, files under hashed URLs kept for a year (and
        # by nginx), compressed as the node compressed them.
        page = await client.get("/app/", headers={"Accept-Encoding": "gzip"})
        assert page.status_code == 200 and "no-cache" in page.headers["cache-control"]
        assert page.headers["content-encoding"] == "gzip"
        hashed = re.search(r'src="(/app/js/[\w.-]+\.js\?v=[0-9a-f]+)"', page.text)
        assert hashed, page.text
        script = await client.get(hashed.group(1))
        assert script.status_code == 200
        assert script.headers["cache-control"] == "public, max-age=31536000, immutable"
        again = await client.get(hashed.group(1))
        assert again.headers["x-cache-status"] == "HIT" and again.content == script.content
        unhashed = await client.get("/app/js/shell.js")
        assert unhashed.headers["cache-control"] == "no-cache"
        # An error of the API comes through in its shape, and so do nginx's own.
        missing = await client.get("/api/v1/me")
        assert missing.status_code == 401 and "code" in missing.json()["error"]
        big = size_bytes(directive("client_max_body_size")) + 1
        too_large = await client.post(
            "/api/v1/files",
            content=b"\0" * big,
            headers={
                "Authorization": f"Bearer {admin}",
                "Content-Type": "application/octet-stream",
            },
        )
        assert too_large.status_code == 413
        assert too_large.json()["error"]["code"] == "too_large"

    # A rendered page: kept by the reader's browser for good, never by nginx.
    chair = await login(cluster.nodes[0], "chair")
    async with nginx.http(chair) as client:
        listing = (await client.get("/api/v1/meetings")).json()
        meeting = (listing["meetings"] if isinstance(listing, dict) else listing)[0]["id"]
        state = (await client.get(f"/api/v1/meetings/{meeting}")).json()
        document = next(d for item in state["agenda"] for d in item["document_ids"])
        page = await client.get(f"/api/v1/files/{document}/pages/1.png?width=200")
        assert page.status_code == 200 and page.headers["content-type"] == "image/png"
        assert page.headers["cache-control"] == "private, max-age=31536000, immutable"
        assert "x-cache-status" not in page.headers
        # The node authorised the reader and named the cached image; nginx sent it.
        webp = await client.get(f"/api/v1/files/{document}/pages/1.webp?width=640")
        assert webp.status_code == 200 and webp.headers["content-type"] == "image/webp"
        assert "x-accel-redirect" not in webp.headers
        assert webp.headers["cache-control"] == "private, max-age=31536000, immutable"
        with Image.open(io.BytesIO(webp.content)) as image:
            assert image.format == "WEBP" and image.width == 640
        assert page.content.startswith(b"\x89PNG")
        # Asked of nginx directly, the internal location does not exist.
        hidden = await client.get(f"{ACCEL_PREFIX}{document}/1-640.webp")
        assert hidden.status_code == 404
    named = await redirect_of(cluster, chair, f"/api/v1/files/{document}/pages/1.webp?width=640")
    assert named.startswith(ACCEL_PREFIX)
    async with nginx.http() as client:
        refused = await client.get(f"/api/v1/files/{document}/pages/1.webp?width=640")
        assert refused.status_code == 401 and refused.content.startswith(b"{")

    ward = await login(cluster.nodes[0], "ward001")
    topic = f"unit:{cluster.city.commune_unit_ids[0]}"
    # Sockets through nginx until each node holds one (least_conn alternates them).
    held: dict[int, WsClient] = {}
    opened = []
    try:
        for _ in range(SOCKETS_TRIED):
            before = [await open_sockets(node) for node in cluster.nodes]
            raw = await websockets.connect(nginx.ws_url, ssl=nginx.ca, max_size=None)
            opened.append(raw)
            ws = WsClient(raw)
            await ws.auth(ward)
            after = [await open_sockets(node) for node in cluster.nodes]
            index = next(i for i in range(2) if after[i] > before[i])
            held.setdefault(index, ws)
            if len(held) == 2:
                break
        assert len(held) == 2, "nginx gave every socket to the same node"

        async def rename(node: Node, name: str) -> None:
            async with httpx.AsyncClient(
                base_url=node.url, timeout=30, headers={"Authorization": f"Bearer {admin}"}
            ) as direct:
                response = await direct.patch(
                    f"/api/v1/units/{cluster.city.commune_unit_ids[0]}", json={"name": name}
                )
            assert response.status_code == 200, response.text

        # Written on node A, heard on the socket node B holds; and the other way round.
        for writer in (0, 1):
            name = f"Phường viết ở nút {writer}"
            await rename(cluster.nodes[writer], name)
            for ws in held.values():
                event = await ws.next_event("unit.updated", timeout=15)
                assert event["topic"] == topic and event["data"]["name"] == name
        await held[0].send(op="ping")
        while (await held[0].recv())["op"] != "pong":
            pass
    finally:
        for raw in opened:
            await raw.close()


# Big enough that a range from its middle means something; a CSV attachment.
ATTACHMENT = b"".join(b"%06d;Phuong %d;%d\n" % (n, n % 126, n * 7) for n in range(12_000))


async def test_whole_files_through_nginx(cluster: Cluster) -> None:
    nginx = cluster.nginx
    chair = await login(cluster.nodes[0], "chair")
    async with nginx.http(chair) as client:
        uploaded = await client.post(
            "/api/v1/files", files={"file": ("so-lieu phường.csv", ATTACHMENT, "text/csv")}
        )
        assert uploaded.status_code == 201, uploaded.text
        attachment = uploaded.json()["id"]
        whole = await client.get(f"/api/v1/files/{attachment}")
        assert whole.status_code == 200 and whole.content == ATTACHMENT
        # The node's headers: what it is, under which name, kept by no one.
        assert whole.headers["content-type"].startswith("text/csv")
        disposition = whole.headers["content-disposition"]
        assert disposition.startswith('attachment; filename="so-lieu ph')
        assert disposition.endswith("filename*=UTF-8''so-lieu%20ph%C6%B0%E1%BB%9Dng.csv")
        assert whole.headers["cache-control"] == "private, no-store"
        assert whole.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in whole.headers["content-security-policy"]
        assert "x-accel-redirect" not in whole.headers
        # Ranges are answered by nginx from the file.
        middle = await client.get(
            f"/api/v1/files/{attachment}", headers={"Range": "bytes=100000-100999"}
        )
        assert middle.status_code == 206
        assert middle.content == ATTACHMENT[100_000:101_000]
        assert middle.headers["content-range"] == f"bytes 100000-100999/{len(ATTACHMENT)}"
        tail = await client.get(f"/api/v1/files/{attachment}", headers={"Range": "bytes=-10"})
        assert tail.status_code == 206 and tail.content == ATTACHMENT[-10:]

        # A PDF comes stamped with the reader's name, sent by nginx too.
        listing = (await client.get("/api/v1/meetings")).json()
        meeting = (listing["meetings"] if isinstance(listing, dict) else listing)[0]["id"]
        state = (await client.get(f"/api/v1/meetings/{meeting}")).json()
        document = next(d for item in state["agenda"] for d in item["document_ids"])
        pdf = await client.get(f"/api/v1/files/{document}")
        assert pdf.status_code == 200, pdf.text
        assert pdf.headers["content-type"] == "application/pdf"
        assert pdf.headers["content-disposition"].startswith("attachment; filename=")
        assert pdf.content.startswith(b"%PDF-")
        reader = PdfReader(io.BytesIO(pdf.content))
        assert reader.metadata is not None
        assert reader.metadata["/DienHongReaderUsername"] == "chair"
        # Neither internal location answers a client directly.
        hidden = await client.get(f"{ACCEL_FILES_PREFIX}blobs/")
        assert hidden.status_code == 404
    named = await redirect_of(cluster, chair, f"/api/v1/files/{attachment}")
    assert named.startswith(ACCEL_FILES_PREFIX + "blobs/")
    stamped = await redirect_of(cluster, chair, f"/api/v1/files/{document}")
    assert stamped.startswith(ACCEL_FILES_PREFIX + "tmp/")
    async with nginx.http() as client:
        refused = await client.get(f"/api/v1/files/{attachment}")
        assert refused.status_code == 401 and refused.content.startswith(b"{")
