"""Annotations on the delegate tablet: pen, highlighter and text note saved as they are
made, shown again after a reload, shared live with another delegate, and written into the
reader's annotated PDF."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from server.demo import DemoCity
from tests.browser.conftest import shot, signed_in, wait_online
from tests.browser.test_annotation_space import page_point
from tests.browser.test_session import prepare_meeting
from tests.conftest import DEMO_PASSWORD
from tests.harness import RunningServer

pytestmark = pytest.mark.browser


async def drag(page: Any, points: list[tuple[float, float]]) -> None:
    """Press, move through the points (fractions of the page image), release."""
    await page_point(page, *points[0])
    box = await page.locator("#viewer .page-wrap img").bounding_box()
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    await page.mouse.move(*xy[0])
    await page.mouse.down()
    for x, y in xy[1:]:
        await page.mouse.move(x, y, steps=4)
    await page.mouse.up()


async def my_annotations(server: RunningServer, username: str, file_id: int) -> list[Any]:
    token = await server.login(username, DEMO_PASSWORD)
    async with server.http(token) as api:
        response = await api.get(f"/api/v1/files/{file_id}/annotations")
    assert response.status_code == 200, response.text
    rows: list[Any] = response.json()["annotations"]
    return rows


async def test_pen_highlighter_note_share_and_annotated_copy(
    server: RunningServer, city: DemoCity, browser: Any
) -> None:
    meeting_id, file_id, _ = await prepare_meeting(server, city)
    _, reader = await signed_in(server, browser, "delegate001")
    _, other = await signed_in(server, browser, "delegate002")
    for page in (reader, other):
        await page.goto(f"{server.url}/app/delegate/#meeting/{meeting_id}")
        await wait_online(page)
        await page.wait_for_selector(f"#viewer[data-file='{file_id}'][data-shown-page='1']")

    await reader.click(".tool[data-tool=pen]")
    await drag(reader, [(0.2, 0.5), (0.4, 0.55), (0.6, 0.5)])
    await reader.click(".tool[data-tool=highlighter]")
    await drag(reader, [(0.1, 0.05), (0.7, 0.09)])
    # A shared note: the other tablet sees it appear.
    await reader.check("#share-notes")
    await reader.click(".tool[data-tool=note]")
    await drag(reader, [(0.5, 0.8), (0.5, 0.8)])
    await reader.fill("dialog textarea", "Đề nghị làm rõ khoản chi đầu tư công")
    await reader.click("dialog button[type=submit]")
    await other.wait_for_selector(".note-pin:has-text('đầu tư công')")

    for _ in range(100):
        rows = await my_annotations(server, "delegate001", file_id)
        if len(rows) == 3:
            break
        await reader.wait_for_timeout(100)
    assert sorted(row["kind"] for row in rows) == ["highlight", "ink", "note"]
    assert [row["shared"] for row in rows if row["kind"] == "note"] == [True]
    await shot(reader, "delegate-annotations-tablet")

    # Shown again after a reload.
    await reader.reload()
    await reader.wait_for_selector(".note-pin:has-text('đầu tư công')")
    # The annotated copy carries them as real PDF annotations.
    async with reader.expect_download() as download_info:
        await reader.click("#download-annotated")
    pdf = Path(await (await download_info.value).path()).read_bytes()
    assert pdf.startswith(b"%PDF") and b"/Ink" in pdf and b"/Highlight" in pdf
    # A swipe to the left turns to the next page (and leaves follow mode).
    await reader.click(".tool[data-tool=none]")
    await drag(reader, [(0.8, 0.5), (0.5, 0.51), (0.2, 0.52)])
    await reader.wait_for_selector(f"#viewer[data-file='{file_id}'][data-shown-page='2']")
    assert not await reader.is_checked("#follow")
    # Pinch with two fingers: the page zooms in.
    box = await reader.locator("#viewer .page-wrap").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 3
    cdp = await reader.context.new_cdp_session(reader)

    async def touch(kind: str, spread: float) -> None:
        points = (
            []
            if kind == "touchEnd"
            else [{"x": cx - spread, "y": cy, "id": 1}, {"x": cx + spread, "y": cy, "id": 2}]
        )
        await cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    await touch("touchStart", 40)
    for spread in (60, 80, 100, 120):
        await touch("touchMove", spread)
    await touch("touchEnd", 0)
    await reader.wait_for_function(
        "() => Number(document.querySelector('#viewer').dataset.zoom) > 2"
    )
    # Back to the whole page with the zoom-out button.
    for _ in range(6):
        await reader.click("button[aria-label='Thu nhỏ']")
    await reader.wait_for_function(
        "() => Number(document.querySelector('#viewer').dataset.zoom) === 1"
    )
    # The pinch turned no page.
    assert await reader.get_attribute("#viewer", "data-shown-page") == "2"
    assert reader.js_errors == [] and other.js_errors == []
    await asyncio.gather(reader.context.close(), other.context.close())
