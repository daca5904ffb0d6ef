"""Signing in with the city's SSO in the browser: the button, the provider's form, and
landing signed in; a refusal shown in Vietnamese on the sign-in page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from server.demo import DemoCity
from tests.browser.conftest import TABLET, WAIT_MS, shot
from tests.browser.test_accessibility import violations
from tests.conftest import MakeServer
from tests.harness import RunningServer
from tests.oidc_provider import CITY_PASSWORD, Provider, sso_server

pytestmark = pytest.mark.browser
SIZES = {
    "chair": {"width": 1440, "height": 900},
    "tablet": {"width": 1280, "height": 800},
    "portrait": {"width": 800, "height": 1280},
    "projector": {"width": 1920, "height": 1080},
}


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    running = Provider()
    await running.start()
    for username in ("ward001", "stranger"):
        running.add_user(username, CITY_PASSWORD)
    yield running
    await running.stop()


@pytest.fixture
async def server(make_server: MakeServer, provider: Provider) -> RunningServer:
    return await sso_server(make_server, provider)


async def sign_in_at_provider(browser: Any, server: RunningServer, username: str) -> Any:
    context = await browser.new_context(viewport=TABLET, locale="vi-VN")
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors
    await page.goto(f"{server.url}/app/")
    button = page.locator("#sso-button")
    await button.wait_for(state="visible")
    assert (await button.inner_text()).strip() == "Đăng nhập bằng SSO"
    await button.click()
    await page.wait_for_selector("#sso-username")
    await page.fill("#sso-username", username)
    await page.fill("#sso-password", CITY_PASSWORD)
    await page.click("#sso-submit")
    return page


async def test_sign_in_with_sso_lands_signed_in(
    server: RunningServer, city: DemoCity, browser: Any
) -> None:
    page = await sign_in_at_provider(browser, server, "ward001")
    # A commune's staff member has one application: the page goes straight to it.
    await page.wait_for_url(f"{server.url}/app/chat/**")
    user = await page.evaluate("JSON.parse(localStorage.getItem('dh.user'))")
    assert user["username"] == "ward001"
    token = await page.evaluate("localStorage.getItem('dh.token')")
    async with server.http(token) as client:
        assert (await client.get("/api/v1/me")).json()["username"] == "ward001"
    assert not page.js_errors


async def test_unknown_account_is_refused_on_the_sign_in_page(
    server: RunningServer, city: DemoCity, browser: Any
) -> None:
    page = await sign_in_at_provider(browser, server, "stranger")
    error = page.locator("#login-error")
    await error.wait_for(state="visible")
    await page.wait_for_function(
        "() => document.getElementById('login-error').textContent.length > 0"
    )
    assert "Không có tài khoản" in await error.inner_text()
    assert await page.evaluate("localStorage.getItem('dh.token')") is None
    # The fragment is gone from the address once read.
    assert "#" not in page.url
    assert await violations(page, "sign-in page with SSO") == []
    for name, size in SIZES.items():
        await page.set_viewport_size(size)
        await shot(page, f"login-sso-refused-{name}")
    assert not page.js_errors
