"""The client shows a refused or failed call in the user's language: the message comes
from the error code, never the server's English text or the browser's "Failed to fetch"."""

from __future__ import annotations

from typing import Any

import pytest

from server.demo import DemoCity
from tests.browser.conftest import signed_in, wait_online
from tests.harness import RunningServer

pytestmark = pytest.mark.browser

CALL = """async (path) => {
    const { api } = await import("/app/js/api.js");
    try { await api(path); return null; }
    catch (err) { return { code: err.code, status: err.status, message: err.message,
                           network: err.network, server: err.serverMessage }; }
}"""


async def test_refusals_and_network_failures_read_in_vietnamese_or_english(
    server: RunningServer, city: DemoCity, browser: Any
) -> None:
    context, page = await signed_in(server, browser, "ward001")
    await page.goto(server.url + "/app/chat/")
    await wait_online(page)
    missing = await page.evaluate(CALL, "directives/999999")
    assert missing["code"] == "directive_not_found" and missing["status"] == 404
    assert missing["message"] == "Không tìm thấy chỉ đạo này."
    assert "does not exist" in missing["server"]

    await page.route("**/api/v1/units", lambda route: route.abort("internetdisconnected"))
    offline = await page.evaluate(CALL, "units")
    assert offline["code"] == "network_error" and offline["network"] is True
    assert offline["message"] == "Không kết nối được máy chủ. Kiểm tra mạng rồi thử lại."
    assert "Failed to fetch" not in offline["message"]

    await page.evaluate("localStorage.setItem('dh.lang', 'en')")
    english = await page.evaluate(CALL, "directives/999999")
    assert english["message"] == "This instruction does not exist."
    # A code this client does not know still reads in the user's language, by status.
    await page.route(
        "**/api/v1/me",
        lambda route: route.fulfill(
            status=409,
            content_type="application/json",
            body='{"error": {"code": "some_new_code", "message": "Raw English."}}',
        ),
    )
    unknown = await page.evaluate(CALL, "me")
    assert unknown["message"] == "This is not possible in the current state."
    await context.close()
