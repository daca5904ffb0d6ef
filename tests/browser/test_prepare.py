"""The secretary prepares a meeting in the browser; the chair opens its prepared poll with one
click in the session and a delegate votes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from server.demo import DemoCity
from tests.browser.conftest import shot, signed_in, wait_online
from tests.browser.documents import council_pdf
from tests.harness import RunningServer

pytestmark = pytest.mark.browser
DESKTOP = {"width": 1440, "height": 900}


async def item_titles(page: Any) -> list[str]:
    titles: list[str] = await page.eval_on_selector_all(
        "#agenda-edit > li > .item-head .item-title", "(els) => els.map((e) => e.textContent)"
    )
    return titles


async def test_secretary_prepares_and_the_chair_opens_the_prepared_poll(
    server: RunningServer,
    city: DemoCity,
    browser: Any,
    tmp_path: Path,
) -> None:
    _, page = await signed_in(server, browser, "secretary", viewport=DESKTOP)
    await page.goto(f"{server.url}/app/prepare/#new")
    await page.wait_for_selector("#meeting-form #m-title")
    await page.fill("#m-title", "Kỳ họp chuyên đề về ngân sách")
    await page.fill("#m-place", "Hội trường Diên Hồng")
    await page.fill("#m-limit", "7")
    # Every delegate in two clicks: filter by role, add all.
    await page.select_option("#p-role", "delegate")
    await page.click("#p-find")
    await page.wait_for_selector("#p-results li")
    await page.click("#p-add-all")
    # The chair by name: the secretary is already in, as secretary.
    await page.select_option("#p-role", "")
    await page.fill("#p-q", "chủ tọa")
    await page.click("#p-find")
    await page.wait_for_selector(f"#p-results li[data-user-id='{city.chair_id}']")
    await page.select_option("#p-as", "chair")
    await page.click(f"#p-results li[data-user-id='{city.chair_id}'] button")
    await page.wait_for_selector(f"#p-selected li[data-user-id='{city.chair_id}']")
    # The delegates (the chair among them, now as chair) and the secretary.
    count = len(city.delegate_ids) + 2
    await page.wait_for_selector(f"#draft-count:has-text('({count})')")
    await shot(page, "prepare-new-meeting")
    await page.click("#meeting-create")
    await page.wait_for_selector("#agenda-form")
    meeting_id = int(page.url.rsplit("/", 1)[1])

    # Three items; the third moves up by a button.
    for title, minutes in (
        ("Khai mạc", "10"),
        ("Tờ trình dự toán ngân sách năm 2027", "45"),
        ("Chất vấn", "60"),
    ):
        await page.fill("#agenda-title", title)
        await page.fill("#agenda-minutes", minutes)
        await page.click("#agenda-add")
        await page.wait_for_selector(f"#agenda-edit .item-title:has-text('{title}')")
    third = page.locator("#agenda-edit > li").nth(2)
    await third.locator("button.up").click()
    await page.wait_for_function(
        "() => document.querySelectorAll('#agenda-edit > li .item-title')[1]?.textContent"
        " === 'Chất vấn'"
    )
    assert await item_titles(page) == [
        "Khai mạc",
        "Chất vấn",
        "Tờ trình dự toán ngân sách năm 2027",
    ]

    # Two PDFs at once on the budget item.
    one, two = tmp_path / "to-trinh.pdf", tmp_path / "du-thao-nghi-quyet.pdf"
    one.write_bytes(council_pdf(3))
    two.write_bytes(council_pdf(2))
    budget = page.locator("#agenda-edit > li").nth(2)
    await budget.locator("input.docs-input").set_input_files([str(one), str(two)])
    await page.wait_for_function(
        "() => document.querySelectorAll('#agenda-edit > li')[2]?.querySelectorAll('.docs li')"
        ".length === 2"
    )

    # A secret poll on that item, prepared in advance; then publish.
    await page.fill("#poll-title", "Thông qua Nghị quyết về dự toán ngân sách năm 2027")
    await page.check("#poll-secret")
    await page.select_option("#poll-item", label="Tờ trình dự toán ngân sách năm 2027")
    await page.click("#poll-create")
    await page.wait_for_selector("#polls li:has-text('Thông qua Nghị quyết')")
    _, delegate = await signed_in(server, browser, "delegate001")
    await page.click("#publish")
    await page.wait_for_selector(".toast:has-text('Đã gửi chương trình')")
    await shot(page, "prepare-meeting")
    await page.evaluate("document.getElementById('agenda-section').scrollIntoView()")
    await shot(page, "prepare-agenda")
    assert page.js_errors == []  # type: ignore[attr-defined]

    # In the session: the chair opens the prepared poll with one click; a delegate votes.
    _, chair = await signed_in(server, browser, "chair", viewport=DESKTOP)
    await chair.goto(f"{server.url}/app/chair/#meeting/{meeting_id}")
    await wait_online(chair)
    await chair.click("#meeting-start")
    await delegate.goto(f"{server.url}/app/delegate/#meeting/{meeting_id}")
    await wait_online(delegate)
    await delegate.click("#check-in")
    await delegate.wait_for_selector("#check-in[aria-pressed=true]")
    await chair.click("#poll-list button[data-action=open]")
    await chair.wait_for_selector("#poll-list li[data-state=open]")
    await delegate.wait_for_selector(".poll-card[data-state=open]")
    await delegate.click(".vote-buttons button[data-choice=yes]")
    await delegate.click("#vote-confirm")
    await delegate.wait_for_selector("#receipt")


@pytest.mark.parametrize("who", ["delegate001", "ward001"])
async def test_prepare_page_refuses_delegates_and_clerks(
    server: RunningServer,
    city: DemoCity,
    browser: Any,
    who: str,
) -> None:
    _, page = await signed_in(server, browser, who, viewport=DESKTOP)
    await page.goto(f"{server.url}/app/prepare/")
    await page.wait_for_selector("#view .error-text")
    assert await page.locator("#meeting-form").count() == 0
