"""The shared real-time client and the login page, in a real browser."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from server.demo import DemoCity
from server.realtime.log import prune_events
from tests.browser.conftest import WAIT_MS, shot, signed_in, wait_online
from tests.conftest import DEMO_PASSWORD
from tests.harness import RunningServer

pytestmark = pytest.mark.browser


async def emit(server: RunningServer, topic: str, count: int, start: int) -> None:
    for n in range(start, start + count):
        async with server.ctx.write() as w:
            await w.emit(topic, "test.note", {"n": n})


async def seen(page: Any, topic: str) -> list[str]:
    events: list[str] = await page.evaluate(
        "(topic) => window.dhEvents.filter((e) => e.startsWith(topic + '#'))", topic
    )
    return events


async def test_login_reload_logout(server: RunningServer, city: DemoCity, browser: Any) -> None:
    context = await browser.new_context(viewport={"width": 1024, "height": 768})
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    await page.goto(server.url + "/app/chat/")
    # Not signed in: sent to the login page, which comes back here afterwards.
    await page.wait_for_url("**/app/?next=*")
    await page.fill("#username", "ward001")
    await page.fill("#password", "wrong-password")
    await page.click("#login-submit")
    await page.wait_for_selector("#login-error:not(:empty)")
    await shot(page, "login-error")
    assert "Sai tên đăng nhập" in await page.inner_text("#login-error")
    # With the keyboard only: Tab to the password, Enter to sign in.
    await page.focus("#username")
    await page.keyboard.press("Tab")
    await page.keyboard.type(DEMO_PASSWORD)
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/app/chat/")
    await wait_online(page)
    # The session survives a reload.
    await page.reload()
    await wait_online(page)
    assert "Cán bộ Phường 001" in await page.inner_text("#app-header")
    # English switch, and back.
    await page.click("#lang-switch")
    await page.wait_for_selector("#logout:text('Sign out')")
    await shot(page, "chat-english-tablet")
    await page.click("#lang-switch")
    await page.wait_for_selector("#logout:text('Đăng xuất')")
    await page.click("#logout")
    await page.wait_for_url("**/app/")
    await page.goto(server.url + "/app/chat/")
    await page.wait_for_url("**/app/?next=*")
    await context.close()


async def issue(server: RunningServer, token: str, unit_id: int, title: str) -> int:
    async with server.http(token) as api:
        response = await api.post(
            "/api/v1/directives",
            json={
                "title": title,
                "body": "Nội dung chỉ đạo.",
                "urgency": "urgent",
                "targets": {"unit_ids": [unit_id], "include_descendants": False},
            },
        )
    assert response.status_code == 201, response.text
    directive_id: int = response.json()["id"]
    return directive_id


async def delivered(server: RunningServer, token: str, directive_id: int) -> int:
    async with server.http(token) as api:
        response = await api.get(f"/api/v1/directives/{directive_id}/receipts")
    assert response.status_code == 200, response.text
    count: int = response.json()["summary"]["delivered"]
    return count


async def test_offline_then_catch_up_exactly_once(
    server: RunningServer, city: DemoCity, browser: Any
) -> None:
    standing = await server.login("standing", DEMO_PASSWORD)
    unit_id = city.commune_unit_ids[0]
    context, page = await signed_in(server, browser, "ward001")
    await page.goto(server.url + "/app/chat/")
    await wait_online(page)
    topic = f"user:{city.ward_user_ids[0]}"
    await emit(server, topic, 2, 1)
    first = await issue(server, standing, unit_id, "Chỉ đạo thứ nhất")
    await page.wait_for_selector(f"#inbox-list li[data-directive='{first}']")

    await context.set_offline(True)
    await page.wait_for_selector("#conn-status[data-status=offline]")
    await shot(page, "chat-offline")
    # Produced while the tablet is offline: two directives and some other events.
    second = await issue(server, standing, unit_id, "Chỉ đạo thứ hai")
    await emit(server, topic, 2, 4)
    third = await issue(server, standing, unit_id, "Chỉ đạo thứ ba")
    assert await delivered(server, standing, second) == 0
    await context.set_offline(False)
    await wait_online(page)
    for directive_id in (second, third):
        await page.wait_for_selector(f"#inbox-list li[data-directive='{directive_id}']")
    await page.wait_for_function(
        "(t) => window.dhEvents.filter((e) => e.startsWith(t + '#')).length >= 7", arg=topic
    )
    assert await page.locator("#inbox-list li").count() == 3
    assert await seen(page, topic) == [f"{topic}#{n}" for n in range(1, 8)]
    # The client confirmed what it caught up on: the directives are now delivered.
    for directive_id in (second, third):
        for _ in range(100):
            if await delivered(server, standing, directive_id) == 1:
                break
            await page.wait_for_timeout(100)
        assert await delivered(server, standing, directive_id) == 1
    # A reload resumes from the position kept in sessionStorage: nothing comes twice.
    await page.reload()
    await wait_online(page)
    await emit(server, topic, 1, 8)
    await page.wait_for_function(
        "(t) => window.dhEvents.filter((e) => e.startsWith(t + '#')).length >= 1", arg=topic
    )
    assert await seen(page, topic) == [f"{topic}#8"]

    # History pruned while offline: the server says reset, the page reloads over REST.
    await context.set_offline(True)
    await page.wait_for_selector("#conn-status[data-status=offline]")
    fourth = await issue(server, standing, unit_id, "Chỉ đạo thứ tư")
    async with server.ctx.db.write_session() as session:
        await prune_events(session, server.ctx.clock.now() + timedelta(days=1))
    await context.set_offline(False)
    await wait_online(page)
    await page.wait_for_selector(f"#inbox-list li[data-directive='{fourth}']")
    assert await page.locator("#inbox-list li").count() == 4
    assert page.js_errors == []
    await context.close()
