"""The chair's panel beyond the main session: agenda editing, absence with a reason, the
speakers' queue (a point of order goes first; reorder), and an election-style poll."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from server.demo import DemoCity
from tests.browser.conftest import TABLET_PORTRAIT, shot, signed_in, wait_online
from tests.browser.test_session import prepare_meeting
from tests.harness import RunningServer

pytestmark = pytest.mark.browser


async def agenda_titles(page: Any) -> list[str]:
    titles: list[str] = await page.eval_on_selector_all(
        "#agenda > ol > li > .row > span.grow", "(els) => els.map((e) => e.textContent)")
    return titles


async def test_agenda_attendance_queue_and_choice_poll(server: RunningServer, city: DemoCity,
                                                       browser: Any) -> None:
    meeting_id, _, _ = await prepare_meeting(server, city)
    _, chair = await signed_in(server, browser, "chair", viewport=TABLET_PORTRAIT)
    await chair.goto(f"{server.url}/app/chair/#meeting/{meeting_id}")
    await wait_online(chair)
    await chair.click("#meeting-start")
    _, one = await signed_in(server, browser, "delegate001")
    _, two = await signed_in(server, browser, "delegate002")
    for page in (one, two):
        await page.goto(f"{server.url}/app/delegate/#meeting/{meeting_id}")
        await wait_online(page)
        await page.click("#check-in")

    # Agenda: add an item, move it up, make it current; the tablets mark it.
    await chair.fill("#new-item", "Chất vấn và trả lời chất vấn")
    await chair.click("#add-item button[type=submit]")
    await chair.wait_for_function(
        "() => document.querySelectorAll('#agenda > ol > li').length === 2")
    await chair.click("#agenda > ol > li:nth-child(2) button[aria-label^='Lên']")
    await chair.wait_for_function(
        "() => document.querySelector('#agenda > ol > li .grow').textContent.startsWith('Chất')")
    assert (await agenda_titles(chair))[1].startswith("Tờ trình")
    await chair.click("#agenda > ol > li:nth-child(1) button[data-action=current]")
    await one.wait_for_selector("#agenda li.current:has-text('Chất vấn')")

    # Attendance: the chair marks a delegate absent with a reason.
    absent_id = city.delegate_ids[2]
    await chair.click(f"#attendance li[data-user='{absent_id}'] button[data-action=absent]")
    await chair.fill("#absent-reason", "Đi công tác")
    await chair.click("dialog button[type=submit]")
    await chair.wait_for_selector(
        f"#attendance li[data-user='{absent_id}']:has-text('Đi công tác')")

    # The queue: a point of order goes before an earlier speech; the chair reorders.
    await one.click("#floor-body button[data-kind=speech]")
    await chair.wait_for_selector(f"#speaker-queue li[data-user='{city.delegate_ids[0]}']")
    await two.click("#floor-body button[data-kind=point_of_order]")
    await chair.wait_for_function(
        "(uid) => document.querySelector('#speaker-queue li')?.dataset.user === String(uid)",
        arg=city.delegate_ids[1])
    await one.wait_for_selector("#queue-place:has-text('2')")
    await chair.click("#speaker-queue li:nth-child(2) button[aria-label^='Lên']")
    await one.wait_for_selector("#queue-place:has-text('1')")

    # An election: choose two of three; the tablet's multi-select, confirm, receipt.
    await chair.click("#new-poll summary")
    await chair.fill("#poll-title", "Bầu Ủy viên Ban Pháp chế")
    await chair.select_option("#poll-kind", "choice")
    await chair.select_option("#poll-rule", "majority_of_cast")
    await chair.fill("#poll-max", "2")
    await chair.fill("#poll-options", "Nguyễn Văn An\nTrần Thị Bình\nLê Hoàng Cường")
    await chair.check("#poll-secret")
    await chair.click("#create-poll")
    await chair.click("#poll-list button[data-action=open]")
    await one.wait_for_selector(".poll-card[data-state=open]")
    await one.click(".vote-buttons button:has-text('Nguyễn Văn An')")
    await one.click(".vote-buttons button:has-text('Lê Hoàng Cường')")
    await one.click(".poll-card .btn-primary:has-text('Xác nhận')")
    await one.click("#vote-confirm")
    await one.wait_for_selector("#receipt")
    await chair.wait_for_selector(
        "#poll-list li[data-state=open] details:has-text('Chưa bỏ phiếu')")
    await shot(chair, "chair-portrait")
    await chair.click("#poll-list button[data-action=close]")
    await chair.click("dialog button[type=submit]")
    await chair.wait_for_selector("#poll-list li[data-state=closed] .result-bars")
    counts = await chair.eval_on_selector_all(
        "#poll-list li[data-state=closed] .result-bars li",
        "(lis) => Object.fromEntries(lis.map((li) => [li.dataset.choice, "
        "Number(li.querySelector('strong').textContent)]))")
    assert counts == {"Nguyễn Văn An": 1, "Trần Thị Bình": 0, "Lê Hoàng Cường": 1}
    # Removing an agenda item (after a confirmation) takes it off every tablet.
    await chair.click("#agenda > ol > li:nth-child(1) button[aria-label^='Xóa']")
    await chair.click("dialog button[type=submit]")
    await one.wait_for_function(
        "() => document.querySelectorAll('#agenda > ol > li').length === 1")
    errors = [e for page in (chair, one, two) for e in page.js_errors]
    assert errors == []
    await asyncio.gather(*(page.context.close() for page in (chair, one, two)))
