"""The delegate tablet in both orientations: the floor buttons are always within reach (a
fixed bar), no horizontal scrolling, and a clear hint with one tap back when the chair
presents something else while the delegate browses on their own."""

from __future__ import annotations

from typing import Any

import pytest

from server.demo import DemoCity
from tests.browser.conftest import shot, signed_in, wait_online
from tests.browser.test_session import prepare_meeting
from tests.harness import RunningServer

pytestmark = pytest.mark.browser

ORIENTATIONS = {
    "portrait": {"width": 800, "height": 1280},
    "landscape": {"width": 1280, "height": 800},
}


async def in_view(page: Any, selector: str) -> bool:
    box = await page.locator(selector).first.bounding_box()
    size = page.viewport_size
    return (
        bool(box)
        and box["y"] >= 0
        and box["y"] + box["height"] <= size["height"]
        and box["x"] >= 0
        and box["x"] + box["width"] <= size["width"]
    )


async def present(
    server: RunningServer, token: str, meeting_id: int, file_id: int, page: int
) -> None:
    async with server.http(token) as api:
        state = (await api.get(f"/api/v1/meetings/{meeting_id}")).json()
        item_id = state["agenda"][0]["id"]
        response = await api.post(
            f"/api/v1/meetings/{meeting_id}/presentation",
            json={"agenda_item_id": item_id, "document_id": file_id, "page": page},
        )
        assert response.status_code == 200, response.text


@pytest.mark.parametrize("orientation", list(ORIENTATIONS))
async def test_floor_bar_and_follow_hint(
    server: RunningServer, city: DemoCity, browser: Any, orientation: str
) -> None:
    meeting_id, file_id, chair = await prepare_meeting(server, city)
    async with server.http(chair) as api:
        assert (await api.post(f"/api/v1/meetings/{meeting_id}/start")).status_code == 200
    await present(server, chair, meeting_id, file_id, 3)
    _, tablet = await signed_in(server, browser, "delegate001", viewport=ORIENTATIONS[orientation])
    await tablet.goto(f"{server.url}/app/delegate/#meeting/{meeting_id}")
    await wait_online(tablet)
    await tablet.click("#check-in")
    await tablet.wait_for_selector(f"#viewer[data-file='{file_id}'][data-shown-page='3']")
    await shot(tablet, f"delegate-{orientation}-presenting")
    # No horizontal scrolling; the floor buttons in view at the top and the bottom of the page.
    width = await tablet.evaluate("() => document.documentElement.scrollWidth - innerWidth")
    assert width <= 0, width
    for y in (0, 100_000):
        await tablet.evaluate(f"() => window.scrollTo(0, {y})")
        assert await in_view(tablet, "#floor-body button[data-kind=point_of_order]")
    await tablet.evaluate("() => window.scrollTo(0, 0)")

    # Browsing on one's own: no hint while the chair has not moved on.
    await tablet.click("#next-page")
    await tablet.wait_for_selector("#viewer[data-shown-page='4']")
    hint = tablet.locator("#follow-hint")
    assert "Chủ tọa đang trình chiếu trang 3" in await hint.inner_text()
    # The chair moves on: the hint says where, one tap follows.
    await present(server, chair, meeting_id, file_id, 5)
    await tablet.wait_for_selector("#follow-hint:has-text('Chủ tọa đang trình chiếu trang 5')")
    assert await tablet.get_attribute("#viewer", "data-shown-page") == "4"
    await shot(tablet, f"delegate-{orientation}-follow-hint")
    await tablet.click("#follow-back")
    await tablet.wait_for_selector("#viewer[data-shown-page='5']")
    assert await tablet.is_checked("#follow")
    await tablet.wait_for_selector("#follow-hint", state="hidden")
    # Asking for the floor from the bar.
    await tablet.click("#floor-body button[data-kind=speech]")
    await tablet.wait_for_selector("#queue-place")
    assert await in_view(tablet, "#withdraw")
    await shot(tablet, f"delegate-{orientation}-queued")
    assert tablet.js_errors == []
    await tablet.context.close()
