"""Security headers on the pages, the static files and the API: a strict CSP that no page
needs to loosen, no framing, no MIME sniffing, no referrer."""

from __future__ import annotations

import httpx

from server.demo import DemoCity
from tests.conftest import DEMO_PASSWORD
from tests.harness import RunningServer


def assert_hardened(response: httpx.Response, what: str) -> str:
    headers = response.headers
    assert headers.get("x-content-type-options") == "nosniff", what
    assert headers.get("referrer-policy") == "no-referrer", what
    assert headers.get("x-frame-options") == "DENY", what
    csp = headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp or "sandbox" in csp, (what, csp)
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, (what, csp)
    return csp


async def test_pages_static_files_and_api_carry_the_headers(
    server: RunningServer, city: DemoCity
) -> None:
    token = await server.login("ward001", DEMO_PASSWORD)
    async with server.http(token) as client:
        for path in ("/app/", "/app/chair/", "/app/delegate/", "/app/projector/", "/app/chat/"):
            csp = assert_hardened(await client.get(path), path)
            assert "script-src 'self'" in csp and "default-src 'self'" in csp
            assert "frame-ancestors 'none'" in csp
        for path in ("/app/js/shell.js", "/app/css/app.css", "/app/nothing-here.js"):
            assert_hardened(await client.get(path), path)
        for path in ("/api/v1/me", "/api/v1/units", "/api/v1/meetings/999999"):
            csp = assert_hardened(await client.get(path), path)
            assert csp.startswith("default-src 'none'")
    async with server.http() as client:
        refused = await client.get("/api/v1/me")
        assert refused.status_code == 401
        assert_hardened(refused, "401")
        assert_hardened(await client.post("/api/v1/auth/login", json={}), "400 login")


async def test_a_served_file_keeps_its_own_sandbox_policy(
    server: RunningServer, city: DemoCity
) -> None:
    token = await server.login("standing", DEMO_PASSWORD)
    async with server.http(token) as client:
        uploaded = await client.post(
            "/api/v1/files", files={"file": ("note.txt", b"plain text", "text/plain")}
        )
        assert uploaded.status_code == 201, uploaded.text
        served = await client.get(f"/api/v1/files/{uploaded.json()['id']}")
    assert served.status_code == 200
    assert served.headers["content-security-policy"] == "default-src 'none'; sandbox"
    assert_hardened(served, "file")
