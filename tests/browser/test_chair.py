"""The chair's console beyond the main session on a portrait tablet: the current item,
absence with a reason, the speakers' queue (a point of order goes first; reorder), and an
election-style poll."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from server.demo import DemoCity
from tests.browser.conftest import TABLET_PORTRAIT, shot, signed_in, wait_online
from tests.browser.test_session import prepare_meeting
from tests.harness import RunningServer

pytestmark = pytest.mark.browser


async def test_agenda_attendance_queue_and_choice_poll(
    server: RunningServer, city: DemoCity, browser: Any
) -> None:
    meeting_id, _, chair_token = await prepare_meeting(server, city)
    async with server.http(chair_token) as api:
        added = await api.post(
            f"/api/v1/meetings/{meeting_id}/agenda", json={"title": "Chất vấn và trả lời chất vấn"}
        )
        assert added.status_code == 201, added.text
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

    # The current item: chosen on the console; the tablets mark it.
    await chair.select_option("#current-select", label="Chất vấn và trả lời chất vấn")
    await one.wait_for_selector("#agenda li.current:has-text('Chất vấn')")

    # Attendance: the chair marks a delegate absent with a reason.
    absent_id = city.delegate_ids[2]
    await chair.click("#tab-attendance")
    await chair.click(f"#attendance tr[data-user='{absent_id}'] button[data-action=absent]")
    await chair.fill("#absent-reason", "Đi công tác")
    await chair.click("dialog button[type=submit]")
    await chair.wait_for_selector(
        f"#attendance tr[data-user='{absent_id}'][data-status=absent]:has-text('Đi công tác')"
    )
    await chair.click("#tab-live")

    # The queue: a point of order goes before an earlier speech; the chair reorders.
    await one.click("#floor-body button[data-kind=speech]")
    await chair.wait_for_selector(f"#speaker-queue li[data-user='{city.delegate_ids[0]}']")
    await two.click("#floor-body button[data-kind=point_of_order]")
    await chair.wait_for_function(
        "(uid) => document.querySelector('#speaker-queue li')?.dataset.user === String(uid)",
        arg=city.delegate_ids[1],
    )
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
        "#poll-list li[data-state=open] details:has-text('Chưa bỏ phiếu')"
    )
    await shot(chair, "chair-portrait")
    await chair.click("#poll-list button[data-action=close]")
    await chair.click("dialog button[type=submit]")
    await chair.wait_for_selector("#poll-list li[data-state=closed] .result-bars")
    counts = await chair.eval_on_selector_all(
        "#poll-list li[data-state=closed] .result-bars li",
        "(lis) => Object.fromEntries(lis.map((li) => [li.dataset.choice, "
        "Number(li.querySelector('strong').textContent)]))",
    )
    assert counts == {"Nguyễn Văn An": 1, "Trần Thị Bình": 0, "Lê Hoàng Cường": 1}
    errors = [e for page in (chair, one, two) for e in page.js_errors]
    assert errors == []
    await asyncio.gather(*(page.context.close() for page in (chair, one, two)))
