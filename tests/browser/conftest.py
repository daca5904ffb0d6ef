"""Browser fixtures: Playwright driving the Debian Chromium (never a downloaded browser).

``browser`` launches headless Chromium for one test; ``signed_in(server, browser, user)``
opens a fresh context (its own storage, like a separate tablet) already signed in.
Screenshots go to ``test-artifacts/`` (git-ignored).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DEMO_PASSWORD
from tests.harness import IN_CI, RunningServer, backends

CHROMIUM = os.environ.get("DIENHONG_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TABLET = {"width": 1024, "height": 768}
TABLET_PORTRAIT = {"width": 768, "height": 1024}
PHONE = {"width": 390, "height": 844}
# Generous: CI runs on 2 shared cores.
WAIT_MS = 15_000


@pytest.fixture(params=backends()[-1:])
def backend(request: pytest.FixtureRequest) -> str:
    """Browser tests drive the pages, not the storage: they run once, against PostgreSQL
    with Redis when configured (the several-node set-up), else SQLite. The server's own
    tests cover both backends."""
    return str(request.param)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is missing: the browser tests must run in CI")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


async def signed_in(
    server: RunningServer,
    browser: Any,
    username: str,
    viewport: dict[str, int] | None = None,
    password: str = DEMO_PASSWORD,
) -> tuple[Any, Any]:
    """A new context (a separate device) with the session already in localStorage."""
    async with server.http() as client:
        response = await client.post(
            "/api/v1/auth/login", json={"username": username, "password": password}
        )
    assert response.status_code == 200, response.text
    answer = response.json()
    context = await browser.new_context(viewport=viewport or TABLET, locale="vi-VN", has_touch=True)
    script = (
        f"localStorage.setItem('dh.token', {json.dumps(answer['access_token'])});"
        f"localStorage.setItem('dh.user', {json.dumps(json.dumps(answer['user']))});"
    )
    await context.add_init_script(script)
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors  # type: ignore[attr-defined]
    return context, page


async def shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=False)
    return path


async def wait_online(page: Any) -> None:
    await page.wait_for_selector("#conn-status[data-status=online]", timeout=WAIT_MS)
