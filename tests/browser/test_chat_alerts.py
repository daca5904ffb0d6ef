"""Alerts that wake a clerk: the permission question after sign-in, and a system
notification (through the chat's service worker) for a Hỏa tốc instruction that arrives
while the clerk's page is in the background."""

from __future__ import annotations

from typing import Any

import pytest

from server.demo import DemoCity
from tests.browser.conftest import WAIT_MS, shot, signed_in, wait_online
from tests.harness import RunningServer
from tests.messaging.support import directive_body, issue, token

pytestmark = pytest.mark.browser

CLERK_DESKTOP = {"width": 1366, "height": 768}
HIDE = """() => {
  Object.defineProperty(document, "visibilityState", {configurable: true, get: () => "hidden"});
  Object.defineProperty(document, "hidden", {configurable: true, get: () => true});
  document.dispatchEvent(new Event("visibilitychange"));
}"""

NOTIFICATIONS = """() => navigator.serviceWorker.ready
  .then((r) => r.getNotifications())
  .then((list) => list.map((n) => ({title: n.title, body: n.body, tag: n.tag,
                                     data: n.data, requireInteraction: n.requireInteraction})))"""


async def test_background_page_gets_a_system_notification_for_express(
    server: RunningServer, city: DemoCity, browser: Any
) -> None:
    context, clerk = await signed_in(server, browser, "ward001", viewport=CLERK_DESKTOP)
    await context.grant_permissions(["notifications"], origin=server.url)
    await clerk.goto(f"{server.url}/app/chat/")
    await wait_online(clerk)
    scope = await clerk.evaluate("navigator.serviceWorker.ready.then((r) => r.scope)")
    assert scope == f"{server.url}/app/chat/"
    # Permission already granted: nothing to ask but, while the browser keeps the page silent
    # (no click on it yet), the click that lets it sound.
    await clerk.wait_for_selector("#view h2")  # loaded: the questions are drawn with it
    assert await clerk.locator("#alert-setup-panel").count() == 0
    if not await clerk.evaluate("navigator.userActivation.hasBeenActive"):
        await clerk.wait_for_selector("#sound-setup-panel #enable-sound")
    # Another tab comes to the front: the chat page is in the background. Headless Chromium
    # keeps every page "visible", so the page is also told it is hidden, as a real
    # background tab would be.
    other = await context.new_page()
    await other.goto(f"{server.url}/app/")
    await other.bring_to_front()
    await clerk.evaluate(HIDE)
    assert await clerk.evaluate("document.visibilityState") == "hidden"

    issued = await issue(
        server,
        await token(server, "standing"),
        directive_body([city.commune_unit_ids[0]], title="Sơ tán dân vùng trũng trước 17 giờ"),
    )
    await clerk.wait_for_function(
        f"{NOTIFICATIONS}.then((list) => list.length > 0)", timeout=WAIT_MS, polling=200
    )
    shown = await clerk.evaluate(NOTIFICATIONS)
    assert len(shown) == 1
    notice = shown[0]
    assert notice["title"] == "Hỏa tốc: Sơ tán dân vùng trũng trước 17 giờ"
    assert notice["tag"] == f"directive-{issued['id']}"
    assert notice["data"]["directive_id"] == issued["id"]
    assert notice["data"]["url"].endswith(f"/app/chat/#directive/{issued['id']}")
    assert notice["requireInteraction"] is True
    # The sender is named (display name, title, unit).
    assert "Thường trực" in notice["body"]
    # Hỏa tốc rings until opened.
    sounds = await clerk.evaluate("window.dhAlerts.sounds.map((s) => s.urgency)")
    assert "express" in sounds
    assert await clerk.evaluate(f"window.dhAlerts.ringing({issued['id']})") is True
    await clerk.bring_to_front()
    await clerk.evaluate("""() => {
      delete document.visibilityState;
      delete document.hidden;
      document.dispatchEvent(new Event("visibilitychange"));
    }""")
    # The card names the sender, whom this clerk never talked to.
    sender = await clerk.inner_text(f"#inbox-list li[data-directive='{issued['id']}'] .sender")
    assert "Phùng Thị Hồng" in sender and "Thường trực HĐND" in sender
    await clerk.click(".express-banner a")
    await clerk.wait_for_selector(f"article.directive[data-directive='{issued['id']}']")
    assert await clerk.evaluate(f"window.dhAlerts.ringing({issued['id']})") is False
    # That click was the gesture: sound is on, the question is gone.
    await clerk.wait_for_selector("#sound-setup-panel", state="detached")
    assert await clerk.evaluate("navigator.userActivation.hasBeenActive") is True
    assert clerk.js_errors == []
    await context.close()


async def test_permission_is_asked_with_an_explanation_and_a_button(
    server: RunningServer, city: DemoCity, browser: Any
) -> None:
    context, clerk = await signed_in(server, browser, "ward002", viewport=CLERK_DESKTOP)
    await clerk.goto(f"{server.url}/app/chat/")
    await wait_online(clerk)
    panel = clerk.locator("#alert-setup-panel")
    await panel.wait_for()
    assert "Hỏa tốc" in await panel.inner_text()
    # Never asked on load: only the button asks.
    assert await clerk.evaluate("Notification.permission") == "default"
    await shot(clerk, "chat-alerts-question-1366")
    # The button asks the browser (which, headless and without a grant, refuses): the
    # question turns into how to allow notifications in the browser's settings.
    await clerk.click("#enable-alerts")
    await clerk.wait_for_selector("#alert-setup-panel:has-text('chặn')")
    assert await clerk.evaluate("Notification.permission") == "denied"
    assert clerk.js_errors == []
    await context.close()


async def test_a_click_on_the_notification_opens_the_instruction(
    server: RunningServer, city: DemoCity, browser: Any
) -> None:
    context, clerk = await signed_in(server, browser, "ward003", viewport=CLERK_DESKTOP)
    await context.grant_permissions(["notifications"], origin=server.url)
    await clerk.goto(f"{server.url}/app/chat/#search")
    await wait_online(clerk)
    await clerk.evaluate("navigator.serviceWorker.ready")
    issued = await issue(
        server,
        await token(server, "standing"),
        directive_body([city.commune_unit_ids[2]], urgency="very_urgent", title="Rà soát hộ nghèo"),
    )
    await clerk.wait_for_function(
        f"{NOTIFICATIONS}.then((list) => list.length > 0)", timeout=WAIT_MS, polling=200
    )
    worker = context.service_workers[0]
    # The worker's own click handler, given the notification it shows.
    await worker.evaluate("""async () => {
      const [shown] = await self.registration.getNotifications();
      self.dispatchEvent(new NotificationEvent("notificationclick", {notification: shown}));
    }""")
    await clerk.wait_for_url(f"**/app/chat/#directive/{issued['id']}")
    await clerk.wait_for_selector(f"article.directive[data-directive='{issued['id']}']")
    await clerk.wait_for_function(
        f"{NOTIFICATIONS}.then((list) => list.length === 0)", timeout=WAIT_MS, polling=200
    )
    assert clerk.js_errors == []
    await context.close()
