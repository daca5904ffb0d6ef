"""Urgent instructions and chat in real browsers: `standing` issues an express instruction
to two wards from the compose form; both wards see it at once; one acknowledges; the
sender's board shows it without a reload. Then a direct conversation between two wards."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from server.demo import DemoCity
from tests.browser.conftest import PHONE, TABLET_PORTRAIT, shot, signed_in, wait_online
from tests.browser.documents import council_pdf
from tests.harness import RunningServer

pytestmark = pytest.mark.browser


async def test_express_instruction_and_live_board(
    server: RunningServer, city: DemoCity, browser: Any
) -> None:
    wards = []
    for n in (1, 2):
        _, page = await signed_in(server, browser, f"ward{n:03d}")
        await page.goto(f"{server.url}/app/chat/")
        await wait_online(page)
        wards.append(page)
    _, sender = await signed_in(server, browser, "standing")
    await sender.goto(f"{server.url}/app/chat/#compose")
    await wait_online(sender)
    await sender.fill("#d-title", "Hỏa tốc: ứng phó bão số 9, sơ tán dân vùng trũng")
    await sender.fill("#d-body", "Các phường khẩn trương tổ chức sơ tán, báo cáo trước 17 giờ.")
    await sender.select_option("#urgency", "express")
    # The unit filter ignores diacritics: "xa 002" finds "Xã 002".
    await sender.fill("#unit-filter", "xa 002")
    assert await sender.is_hidden(f".unit-tree input[value='{city.commune_unit_ids[0]}']")
    await sender.check(f".unit-tree input[value='{city.commune_unit_ids[1]}']")
    await sender.fill("#unit-filter", "")
    await sender.check(f".unit-tree input[value='{city.commune_unit_ids[0]}']")
    await shot(sender, "chat-compose-tablet")
    await sender.click("#issue-button")
    await sender.wait_for_url("**#board/*")
    await sender.wait_for_selector("#board-summary")
    assert "0/2" in await sender.inner_text("#board-summary")

    # Each ward sees it at once, impossible to miss.
    for page in wards:
        await page.wait_for_selector(".express-banner")
        await page.wait_for_selector("#inbox-list li[data-urgency=express].unacked")
    await shot(wards[0], "chat-inbox-express-tablet")

    # One acknowledges with a note; the sender's board moves without a reload.
    await wards[0].click(".express-banner a")
    await wards[0].fill("#ack-note", "Đã nhận, đang triển khai sơ tán.")
    await wards[0].click("#ack-button")
    await wards[0].wait_for_selector("#acked-tag")
    await sender.wait_for_function(
        "() => document.querySelector('#board-summary').textContent.includes('1/2')"
    )
    first, second = city.commune_unit_ids[:2]
    await sender.wait_for_selector(f"#board-grid [data-unit='{first}'][data-state=acknowledged]")
    assert (
        await sender.get_attribute(f"#board-grid [data-unit='{second}']", "data-state")
        != "acknowledged"
    )
    await shot(sender, "chat-board-tablet")
    # The second ward's banner stays until it acknowledges.
    assert await wards[1].locator(".express-banner").count() == 1
    # The receipts as CSV, for the record.
    async with sender.expect_download() as download_info:
        await sender.click("#export-csv")
    download = await download_info.value
    csv_text = Path(await download.path()).read_text(encoding="utf-8-sig")
    assert "Phường 001" in csv_text and "Xã 002" in csv_text

    # A ward reports back; the sender side sees the thread live.
    directive_id = int(sender.url.rsplit("/", 1)[1])
    await sender.goto(f"{server.url}/app/chat/#directive/{directive_id}")
    await sender.wait_for_selector("#thread-list")
    await wards[1].click(".express-banner a")
    await wards[1].fill("#reply-body", "Xin ý kiến: có cần sơ tán cả trường học không?")
    await wards[1].click("#reply-send")
    await sender.wait_for_selector("#thread-list .message:has-text('trường học')")
    # Search, insensitive to diacritics.
    await wards[0].goto(f"{server.url}/app/chat/#search?q=so%20tan")
    await wards[0].wait_for_selector(f"#search-results a[href='#directive/{directive_id}']")
    # Presence in the sender's unit channel: "1 of 2 online", then the chair comes online.
    channel = sender.locator("#channel-list a").first
    await channel.click()
    await sender.wait_for_selector("#online-count")
    assert "1/2" in await sender.inner_text("#online-count")
    _, chair = await signed_in(server, browser, "chair")
    await chair.goto(f"{server.url}/app/chat/")
    await wait_online(chair)
    await sender.wait_for_function(
        "() => document.querySelector('#online-count').textContent.includes('2/2')"
    )
    await chair.context.close()
    await wards[0].set_viewport_size(PHONE)
    await shot(wards[0], "chat-directive-phone")
    errors = [e for page in [sender, *wards] for e in page.js_errors]
    assert errors == []
    await asyncio.gather(*(page.context.close() for page in [sender, *wards]))


async def test_direct_messages_typing_edit_retract(
    server: RunningServer, city: DemoCity, browser: Any
) -> None:
    token = await server.login("ward001", "demo-password-1")
    async with server.http(token) as api:
        created = await api.post(
            "/api/v1/channels", json={"kind": "direct", "member_ids": [city.ward_user_ids[1]]}
        )
        assert created.status_code == 201, created.text
        channel_id = created.json()["id"]
    _, one = await signed_in(server, browser, "ward001")
    _, two = await signed_in(server, browser, "ward002", viewport=TABLET_PORTRAIT)
    await one.goto(f"{server.url}/app/chat/#channel/{channel_id}")
    await two.goto(f"{server.url}/app/chat/")
    await wait_online(one)
    await wait_online(two)
    await one.fill("#message-input", "Chào đồng chí, phường đã nhận được công văn chưa?")
    await one.press("#message-input", "Enter")
    await one.wait_for_selector("#message-list .message.mine")
    # The other side: an unread count on the conversation, then the message.
    badge = f"#direct-list a[href='#channel/{channel_id}'] .badge"
    await two.wait_for_selector(badge)
    assert (await two.inner_text(badge)).strip() == "1"
    await two.click(f"#direct-list a[href='#channel/{channel_id}']")
    await two.wait_for_selector("#message-list .message:has-text('công văn')")
    await two.wait_for_selector(badge, state="detached")
    await two.type("#message-input", "Đã nhận")
    await one.wait_for_selector("#typing:not(:empty)")
    # A message arriving while writing leaves the text being written alone.
    await one.fill("#message-input", "Thêm: họp giao ban lúc 14 giờ.")
    await one.press("#message-input", "Enter")
    await two.wait_for_selector("#message-list .message:has-text('giao ban')")
    assert await two.input_value("#message-input") == "Đã nhận"
    await two.press("#message-input", "Enter")
    await one.wait_for_selector("#message-list .message:not(.mine):has-text('Đã nhận')")
    # An attachment: uploaded with the message, opened by name on the other side.
    await one.set_input_files(
        "#message-file",
        files=[
            {"name": "cong-van-12.pdf", "mimeType": "application/pdf", "buffer": council_pdf(1)}
        ],
    )
    await one.fill("#message-input", "Công văn kèm theo")
    await one.press("#message-input", "Enter")
    await two.wait_for_selector(
        "#message-list .message button[data-file]:has-text('cong-van-12.pdf')"
    )
    # Edit, then retract: the other side sees both live.
    first = one.locator("#message-list .message.mine").first
    await first.locator("button", has_text="Sửa").click()
    await one.fill("dialog textarea", "Chào đồng chí, xin xác nhận công văn số 12.")
    await one.click("dialog button[type=submit]")
    await two.wait_for_selector("#message-list .message:has-text('công văn số 12')")
    await (
        one.locator("#message-list .message.mine")
        .first.locator("button", has_text="Thu hồi")
        .click()
    )
    await two.wait_for_selector("#message-list .message.retracted")
    await shot(two, "chat-direct-portrait")
    # A group: picked from another unit in the dialog; it appears live on the other side.
    await one.click("#nav button:has-text('Nhóm mới')")
    await one.fill("#g-name", "Tổ công tác bão số 9")
    await one.select_option("#people-unit", str(city.commune_unit_ids[1]))
    await one.check(f"#people input[value='{city.ward_user_ids[1]}']")
    await one.click("dialog button[type=submit]")
    await one.wait_for_url("**#channel/*")
    await two.wait_for_selector("#channel-list a:has-text('Tổ công tác bão số 9')")
    assert one.js_errors == [] and two.js_errors == []
    await asyncio.gather(one.context.close(), two.context.close())
