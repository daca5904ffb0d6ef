"""The chair's live console for a 95-delegate session: everything needed live on one
screen at 1440×900 and 1280×800 without scrolling; agenda editing left to the preparation
view; floor requests seen and heard (a point of order above all); keyboard shortcuts;
attendance of the whole body in a compact table with search, status as status, namesakes
told apart and the rest marked absent at once with a reason."""

from __future__ import annotations

from typing import Any

import pytest

from server.demo import DemoCity, seed_demo
from tests.browser.conftest import shot, signed_in, wait_online
from tests.browser.documents import council_pdf
from tests.conftest import DEMO_PASSWORD
from tests.harness import RunningServer

pytestmark = pytest.mark.browser

CHAIR_SIZES = [{"width": 1440, "height": 900}, {"width": 1280, "height": 800}]


async def big_meeting(server: RunningServer) -> tuple[DemoCity, int, int]:
    """95 delegates (two of them namesakes), the chair, a PDF on the current item."""
    city, _ = await seed_demo(server.ctx, password=DEMO_PASSWORD, communes=2, delegates=95)
    admin = await server.login("admin", DEMO_PASSWORD)
    async with server.http(admin) as api:
        # Two delegates with the same name, as happens in a large body.
        for uid in city.delegate_ids[10:12]:
            response = await api.patch(
                f"/api/v1/users/{uid}", json={"display_name": "Nguyễn Văn Hùng"}
            )
            assert response.status_code == 200, response.text
    chair = await server.login("chair", DEMO_PASSWORD)
    async with server.http(chair) as api:
        upload = await api.post(
            "/api/v1/files", files={"file": ("to-trinh.pdf", council_pdf(5), "application/pdf")}
        )
        file_id = upload.json()["id"]
        created = await api.post(
            "/api/v1/meetings",
            json={
                "title": "Kỳ họp thứ 12 — HĐND thành phố",
                "starts_at": "2026-11-23T08:00:00+07:00",
                "place": "Hội trường Diên Hồng",
                "chair_ids": [city.chair_id],
                "delegate_ids": city.delegate_ids,
                "secretary_ids": [city.secretary_id],
            },
        )
        meeting_id = created.json()["id"]
        item = await api.post(
            f"/api/v1/meetings/{meeting_id}/agenda",
            json={"title": "Tờ trình về dự toán ngân sách năm 2027", "document_ids": [file_id]},
        )
        await api.post(
            f"/api/v1/meetings/{meeting_id}/agenda/current",
            json={"agenda_item_id": item.json()["id"]},
        )
        await api.post(
            f"/api/v1/meetings/{meeting_id}/presentation",
            json={"agenda_item_id": item.json()["id"], "document_id": file_id, "page": 1},
        )
        assert (await api.post(f"/api/v1/meetings/{meeting_id}/start")).status_code == 200
        poll = await api.post(
            f"/api/v1/meetings/{meeting_id}/polls",
            json={
                "title": "Thông qua Nghị quyết về dự toán",
                "kind": "yes_no_abstain",
                "secret": False,
                "rule": "majority_of_members",
            },
        )
        assert poll.status_code == 201, poll.text
    return city, meeting_id, file_id


async def no_page_scroll(page: Any) -> None:
    overflow = await page.evaluate(
        "() => [document.documentElement.scrollHeight - innerHeight,"
        " document.documentElement.scrollWidth - innerWidth]"
    )
    assert overflow[0] <= 0 and overflow[1] <= 0, overflow


async def visible_in_viewport(page: Any, selector: str) -> None:
    box = await page.locator(selector).first.bounding_box()
    size = page.viewport_size
    assert box is not None, selector
    assert box["y"] >= 0 and box["y"] + box["height"] <= size["height"] + 1, (selector, box)


async def test_live_console_for_a_full_hall(server: RunningServer, browser: Any) -> None:
    _city, meeting_id, file_id = await big_meeting(server)
    _, one = await signed_in(server, browser, "delegate001")
    await one.goto(f"{server.url}/app/delegate/#meeting/{meeting_id}")
    await wait_online(one)
    await one.click("#check-in")
    for size in CHAIR_SIZES:
        context, chair = await signed_in(server, browser, "chair", viewport=size)
        await chair.goto(f"{server.url}/app/chair/#meeting/{meeting_id}")
        await wait_online(chair)
        await chair.wait_for_selector(f"#item-documents button[data-doc='{file_id}']")
        await chair.click(f"#item-documents button[data-doc='{file_id}']")
        await chair.wait_for_selector("#present")
        # Editing the agenda is not here: the preparation view is one link away.
        assert await chair.locator("#add-item, #agenda button[aria-label^='Xóa']").count() == 0
        assert (
            await chair.get_attribute("#prepare-link", "href")
            == f"/app/prepare/#meeting/{meeting_id}"
        )
        # Everything live is on the screen without scrolling the page.
        for selector in (
            "#current-select",
            "#present",
            "#present-next",
            "#grant-next",
            "#quorum-text",
            "#poll-list button[data-action]",
            "#meeting-adjourn",
        ):
            await visible_in_viewport(chair, selector)
        await no_page_scroll(chair)
        # The session's whole title shows, not cut short (the bar has a row of its own).
        title = "#meeting-title"
        assert await chair.text_content(title) == "Kỳ họp thứ 12 — HĐND thành phố"
        assert await chair.eval_on_selector(title, "e => e.scrollWidth <= e.clientWidth")
        if size == CHAIR_SIZES[0]:
            # A point of order: a visible alert, and a tone.
            await one.click("#floor-body button[data-kind=point_of_order]")
            alert = chair.locator("#floor-alert[data-kind=point_of_order]")
            await alert.wait_for()
            assert "KIẾN NGHỊ THỦ TỤC" in await alert.inner_text()
            await chair.wait_for_function("() => window.dhChimes >= 1")
            await visible_in_viewport(chair, "#floor-alert")
            # Keys: → presents the next page on every screen, N gives the floor.
            await chair.locator("body").click(position={"x": 5, "y": 5})
            await chair.keyboard.press("ArrowRight")
            await one.wait_for_selector(f"#viewer[data-file='{file_id}'][data-shown-page='2']")
            await chair.keyboard.press("n")
            await chair.wait_for_selector("#speaker-timer")
            await one.wait_for_selector("#speaker-timer")
            # Granted: the alert has done its work.
            await chair.wait_for_selector("#floor-alert", state="hidden")
            await chair.keyboard.press("ArrowLeft")
            await one.wait_for_selector("#viewer[data-shown-page='1']")
            # A prepared vote opens with one click.
            await chair.click("#poll-list button[data-action=open]")
            await chair.wait_for_selector("#poll-list li[data-state=open] .verdict")
            await no_page_scroll(chair)
        await shot(chair, f"chair-console-{size['width']}x{size['height']}")
        assert chair.js_errors == []
        await context.close()
    await one.context.close()


async def test_attendance_of_ninety_five(server: RunningServer, browser: Any) -> None:
    _city, meeting_id, _ = await big_meeting(server)
    _, chair = await signed_in(server, browser, "chair", viewport=CHAIR_SIZES[0])
    await chair.goto(f"{server.url}/app/chair/#meeting/{meeting_id}")
    await wait_online(chair)
    await chair.click("#tab-attendance")
    rows = chair.locator("#attendance-table tbody tr")
    await chair.wait_for_function(
        "() => document.querySelectorAll('#attendance-table tbody tr').length === 96"
    )
    # Status reads as status, not as a button.
    first = rows.first
    assert await first.locator(".status").inner_text() == "Chưa điểm danh"
    # Namesakes carry something that tells them apart.
    namesakes = chair.locator("#attendance-table tbody tr:has-text('Nguyễn Văn Hùng') .namesake")
    assert await namesakes.count() == 2
    texts = await namesakes.all_inner_texts()
    assert texts[0] != texts[1]
    # Search by seat, then by name.
    await chair.fill("#attendance-search", "12")
    await chair.wait_for_function(
        "() => document.querySelectorAll('#attendance-table tbody tr').length === 1"
    )
    await chair.fill("#attendance-search", "Nguyễn Văn Hùng")
    await chair.wait_for_function(
        "() => document.querySelectorAll('#attendance-table tbody tr').length === 2"
    )
    await chair.fill("#attendance-search", "")
    # Two check in; the rest are marked absent at once, with a reason.
    for n in (1, 2):
        token = await server.login(f"delegate{n:03d}", DEMO_PASSWORD)
        async with server.http(token) as api:
            await api.post(f"/api/v1/meetings/{meeting_id}/attendance", json={"present": True})
    await chair.wait_for_selector("#attendance-table tr[data-status=present] >> nth=1")
    await chair.click("#mark-rest-absent")
    await chair.fill("#rest-reason", "Không có mặt khi khai mạc")
    await chair.click("dialog button[type=submit]")
    await chair.wait_for_function(
        "() => document.querySelectorAll('#attendance-table tr[data-status=absent]').length === 94",
        timeout=60_000,
    )
    await no_page_scroll(chair)
    await shot(chair, "chair-attendance-1440x900")
    chair_token = await server.login("chair", DEMO_PASSWORD)
    async with server.http(chair_token) as api:
        state = (await api.get(f"/api/v1/meetings/{meeting_id}")).json()
    reasons = {
        p["absent_reason"]
        for p in state["participants"]
        if not p["present"] and p["role"] in ("delegate", "chair")
    }
    assert reasons == {"Không có mặt khi khai mạc"}
    assert chair.js_errors == []
    await chair.context.close()
