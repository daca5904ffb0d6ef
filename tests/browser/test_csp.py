"""The pages work under their Content-Security-Policy: Chromium reports no violation on
the sign-in page, the chat, the delegate tablet, the chair's panel and the projector."""

from __future__ import annotations

from typing import Any

import pytest

from server.demo import DemoCity
from tests.browser.conftest import WAIT_MS, signed_in, wait_online
from tests.browser.test_session import prepare_meeting
from tests.harness import RunningServer

pytestmark = pytest.mark.browser

# Collects every violation the page reports, before any script of the page runs.
LISTEN = (
    "window.__cspViolations = [];"
    "document.addEventListener('securitypolicyviolation', (e) =>"
    " window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));"
)


async def violations(page: Any, console: list[str]) -> list[str]:
    reported: list[str] = await page.evaluate("window.__cspViolations")
    return reported + [text for text in console if "Content Security Policy" in text]


async def test_pages_run_without_a_csp_violation(
    server: RunningServer, city: DemoCity, browser: Any
) -> None:
    meeting_id, _, _ = await prepare_meeting(server, city)
    pages = [
        ("chair", f"/app/chair/#meeting/{meeting_id}"),
        ("delegate001", f"/app/delegate/#meeting/{meeting_id}"),
        ("chair", f"/app/projector/#meeting/{meeting_id}"),
        ("ward001", "/app/chat/"),
    ]
    for username, path in pages:
        context, page = await signed_in(server, browser, username)
        console: list[str] = []
        page.on("console", lambda message, seen=console: seen.append(message.text))
        await context.add_init_script(LISTEN)
        await page.goto(server.url + path)
        await wait_online(page)
        await page.wait_for_load_state("networkidle", timeout=WAIT_MS)
        assert page.js_errors == [], (path, page.js_errors)
        assert await violations(page, console) == [], path
        # The page really built itself (its scripts ran and styled elements exist).
        assert await page.locator("main, #app, body > *").count() > 0
        await context.close()
    context = await browser.new_context()
    page = await context.new_page()
    console = []
    page.on("console", lambda message: console.append(message.text))
    await context.add_init_script(LISTEN)
    await page.goto(server.url + "/app/")
    await page.wait_for_load_state("networkidle", timeout=WAIT_MS)
    assert await violations(page, console) == []
    await context.close()


async def test_inline_script_and_style_attributes_are_refused(
    server: RunningServer, browser: Any
) -> None:
    """The policy is really enforced: what a stored-XSS payload would try is blocked."""
    context = await browser.new_context()
    page = await context.new_page()
    await context.add_init_script(LISTEN)
    await page.goto(server.url + "/app/")
    await page.wait_for_load_state("networkidle", timeout=WAIT_MS)
    ran = await page.evaluate("""() => new Promise((resolve) => {
        window.__ran = false;
        const s = document.createElement('script');
        s.textContent = 'window.__ran = true';
        document.body.append(s);
        const d = document.createElement('div');
        d.setAttribute('onclick', 'window.__ran = true');
        document.body.append(d);
        d.click();
        setTimeout(() => resolve(window.__ran), 100);
    })""")
    assert ran is False
    assert any(v.startswith("script-src") for v in await page.evaluate("window.__cspViolations"))
    await context.close()
