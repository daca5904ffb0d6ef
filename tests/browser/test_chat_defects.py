"""Small defects of the chat page: the unread badge stays 0 after reading and reloading;
the dot of a direct conversation shows the other person's presence; "Quá hạn" reaches the
commune's card live; search results show kind, date and the match."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from messaging.runtime import started_runtime
from server.clock import ManualClock
from server.demo import DemoCity, seed_demo
from tests.browser.conftest import shot, signed_in, wait_online
from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.harness import RunningServer, eventually
from tests.messaging.support import directive_body, issue, token

pytestmark = pytest.mark.browser

CLERK_DESKTOP = {"width": 1366, "height": 768}
CLERK_PORTRAIT = {"width": 800, "height": 1280}


async def test_unread_badge_is_zero_after_reading_and_reloading(
    server: RunningServer, city: DemoCity, browser: Any
) -> None:
    writer = await token(server, "ward001")
    async with server.http(writer) as http:
        channel_id = (
            await http.post(
                "/api/v1/channels", json={"kind": "direct", "member_ids": [city.ward_user_ids[1]]}
            )
        ).json()["id"]
    _, reader = await signed_in(server, browser, "ward002", viewport=CLERK_DESKTOP)
    await reader.goto(f"{server.url}/app/chat/#channel/{channel_id}")
    await wait_online(reader)
    await reader.wait_for_selector("#message-input")
    # Messages arrive while the reader looks at the conversation.
    async with server.http(writer) as http:
        for n, text in enumerate(("Phường đã nhận công văn chưa?", "Nhờ xác nhận trước 15 giờ.")):
            posted = await http.post(
                f"/api/v1/channels/{channel_id}/messages",
                json={"body": text, "client_msg_id": f"m{n}"},
            )
            assert posted.status_code == 201, posted.text
    await reader.wait_for_selector("#message-list .message:has-text('15 giờ')")
    badge = f"#direct-list a[href='#channel/{channel_id}'] .badge"

    async def unread_on_server() -> int:
        async with server.http(await token(server, "ward002")) as http:
            channels = (await http.get("/api/v1/channels")).json()["channels"]
        return int(next(c["unread"] for c in channels if c["id"] == channel_id))

    async def unread_on_server_is(count: int) -> bool:
        return await unread_on_server() == count

    await eventually(lambda: unread_on_server_is(0), "no unread on the server", timeout=5)
    await reader.goto(f"{server.url}/app/chat/#inbox")
    await reader.reload()
    await wait_online(reader)
    await reader.wait_for_selector(f"#direct-list a[href='#channel/{channel_id}']")
    assert await reader.locator(badge).count() == 0
    assert reader.js_errors == []
    await reader.context.close()


async def test_direct_conversation_dot_shows_presence(
    server: RunningServer, city: DemoCity, browser: Any
) -> None:
    one = await token(server, "ward001")
    async with server.http(one) as http:
        channel_id = (
            await http.post(
                "/api/v1/channels", json={"kind": "direct", "member_ids": [city.ward_user_ids[2]]}
            )
        ).json()["id"]
    _, other = await signed_in(server, browser, "ward003", viewport=CLERK_DESKTOP)
    await other.goto(f"{server.url}/app/chat/")
    await wait_online(other)
    _, page = await signed_in(server, browser, "ward001", viewport=CLERK_DESKTOP)
    await page.goto(f"{server.url}/app/chat/")
    await wait_online(page)
    dot = f"#direct-list a[href='#channel/{channel_id}'] .presence-dot"
    await page.wait_for_selector(f"{dot}.presence-online")
    assert await page.get_attribute(dot, "title") == "trực tuyến"
    assert page.js_errors == [] and other.js_errors == []
    await asyncio.gather(page.context.close(), other.context.close())


async def test_overdue_reaches_the_commune_live(make_server: MakeServer, browser: Any) -> None:
    clock = ManualClock(datetime.now(UTC))
    server = await make_server(clock=clock)
    city, _ = await seed_demo(server.ctx, password=DEMO_PASSWORD, communes=2, delegates=2)
    due = clock.now() + timedelta(hours=1)
    issued = await issue(
        server,
        await token(server, "standing"),
        directive_body(
            [city.commune_unit_ids[0]],
            urgency="urgent",
            title="Báo cáo số hộ đã sơ tán",
            due_at=due.isoformat(),
        ),
    )
    _, page = await signed_in(server, browser, "ward001", viewport=CLERK_PORTRAIT)
    await page.goto(f"{server.url}/app/chat/")
    await wait_online(page)
    card = f"#inbox-list li[data-directive='{issued['id']}']"
    await page.wait_for_selector(card)
    assert await page.locator(f"{card} .overdue-tag").count() == 0
    await clock.advance(3600)
    scheduler = started_runtime(server.ctx).reminders
    await asyncio.wait_for(scheduler.wait_checked(clock.now()), 10)
    await page.wait_for_selector(f"{card} .overdue-tag")
    await page.wait_for_selector(".toast:has-text('Quá hạn')")
    await shot(page, "chat-overdue-800")
    assert page.js_errors == []
    await page.context.close()


async def test_search_results_show_kind_date_and_match(
    server: RunningServer, city: DemoCity, browser: Any
) -> None:
    issued = await issue(
        server,
        await token(server, "standing"),
        directive_body([city.commune_unit_ids[0]], title="Tổ chức sơ tán dân vùng trũng"),
    )
    _, page = await signed_in(server, browser, "ward001", viewport=CLERK_DESKTOP)
    await page.goto(f"{server.url}/app/chat/#search?q=so%20tan")
    await wait_online(page)
    hit = f"#search-list li[data-kind=directive]:has(a[href='#directive/{issued['id']}'])"
    await page.wait_for_selector(hit)
    text = await page.inner_text(hit)
    assert "Chỉ đạo" in text
    assert await page.locator(f"{hit} .hit-at").count() == 1
    marks = await page.locator(f"{hit} mark").all_inner_texts()
    assert "sơ tán" in [m.lower() for m in marks] or {"sơ", "tán"} <= {m.lower() for m in marks}
    await shot(page, "chat-search-1366")
    assert page.js_errors == []
    await page.context.close()
