"""Annotations are stored in page space: a mark drawn at a point of the page lands on that
point of the PDF page in ``annotated.pdf``, whatever the tablet's viewport, zoom and scroll, the
lower half of a tall page can be marked, and a shared note shows at the same point of the
page on a tablet of another shape."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
from pypdf import PdfReader

from server.demo import DemoCity
from tests.browser.conftest import signed_in, wait_online
from tests.browser.test_session import prepare_meeting
from tests.conftest import DEMO_PASSWORD
from tests.harness import RunningServer

pytestmark = pytest.mark.browser

VIEWPORTS = {
    "delegate001": {"width": 1280, "height": 800},
    "delegate002": {"width": 800, "height": 1280},
    "delegate003": {"width": 1440, "height": 900},
}
# Where each delegate draws a pen stroke: (x, y) fractions of the page, top left origin;
# one stroke near the top, one low on the page (below a landscape screen's first view).
STROKES = [[(0.2, 0.15), (0.4, 0.15), (0.6, 0.2)], [(0.25, 0.85), (0.5, 0.88), (0.7, 0.9)]]
# Off by at most this fraction of the page (rounding and pointer pixels).
TOLERANCE = 0.01


async def page_point(page: Any, fx: float, fy: float) -> tuple[float, float]:
    """Scroll the viewer so that (fx, fy) of the page is in view; its client position."""
    await page.evaluate(
        """([fx, fy]) => {
             const scroll = document.querySelector('#viewer .viewer-scroll');
             const img = document.querySelector('#viewer .page-wrap img');
             const top = img.getBoundingClientRect().top - scroll.getBoundingClientRect().top;
             scroll.scrollTop += top + fy * img.getBoundingClientRect().height
                                 - scroll.clientHeight / 2;
             const left = img.getBoundingClientRect().left - scroll.getBoundingClientRect().left;
             scroll.scrollLeft += left + fx * img.getBoundingClientRect().width
                                  - scroll.clientWidth / 2;
           }""",
        [fx, fy],
    )
    box = await page.locator("#viewer .page-wrap img").bounding_box()
    return box["x"] + fx * box["width"], box["y"] + fy * box["height"]


async def draw(page: Any, points: list[tuple[float, float]]) -> None:
    # The view is scrolled to the stroke's first point; the others are in view with it.
    await page_point(page, *points[0])
    box = await page.locator("#viewer .page-wrap img").bounding_box()
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    await page.mouse.move(*xy[0])
    await page.mouse.down()
    for x, y in xy[1:]:
        await page.mouse.move(x, y, steps=4)
    await page.mouse.up()


async def ink_in_pdf(server: RunningServer, username: str, file_id: int) -> list[list[float]]:
    """The /InkList points of page 1 of the reader's annotated copy, as page fractions."""
    token = await server.login(username, DEMO_PASSWORD)
    async with server.http(token) as api:
        response = await api.get(f"/api/v1/files/{file_id}/annotated.pdf")
    assert response.status_code == 200, response.text
    page = PdfReader(io.BytesIO(response.content)).pages[0]
    box = page.mediabox
    width, height, left, top = float(box.width), float(box.height), float(box.left), float(box.top)
    strokes = []
    for ref in page.get("/Annots") or []:
        annotation = ref.get_object()
        if annotation.get("/Subtype") != "/Ink":
            continue
        for stroke in annotation["/InkList"]:
            coords = [float(c) for c in stroke]
            strokes.append(
                [
                    ((x - left) / width, (top - y) / height)
                    for x, y in zip(coords[0::2], coords[1::2], strict=True)
                ]
            )
    return strokes


async def test_marks_land_where_drawn_at_every_viewport(
    server: RunningServer, city: DemoCity, browser: Any
) -> None:
    meeting_id, file_id, _ = await prepare_meeting(server, city)
    pages = {}
    for username, viewport in VIEWPORTS.items():
        _, page = await signed_in(server, browser, username, viewport=viewport)
        await page.goto(f"{server.url}/app/delegate/#meeting/{meeting_id}")
        await wait_online(page)
        await page.wait_for_selector(f"#viewer[data-file='{file_id}'][data-shown-page='1']")
        pages[username] = page

    # One reader draws zoomed in (the page wider than the screen, scrolled both ways).
    zoomed = pages["delegate003"]
    for _ in range(2):
        await zoomed.click("button[aria-label='Phóng to']")
    await zoomed.wait_for_function(
        "() => Number(document.querySelector('#viewer').dataset.zoom) > 1.5"
    )
    for username, page in pages.items():
        await page.click(".tool[data-tool=pen]")
        for stroke in STROKES:
            await draw(page, stroke)
        for _ in range(100):
            strokes = await ink_in_pdf(server, username, file_id)
            if len(strokes) == len(STROKES):
                break
            await page.wait_for_timeout(100)
        assert len(strokes) == len(STROKES), (username, strokes)
        for drawn, stored in zip(STROKES, strokes, strict=True):
            # Each drawn point is on the stored stroke (which has the move's points between).
            for fx, fy in drawn:
                nearest = min(abs(x - fx) + abs(y - fy) for x, y in stored)
                assert nearest < 2 * TOLERANCE, (username, viewport_of(username), fx, fy, stored)

    # A shared note put low on the page by a landscape tablet shows at that point of the page
    # on the portrait one.
    writer, reader = pages["delegate001"], pages["delegate002"]
    await writer.check("#share-notes")
    await writer.click(".tool[data-tool=note]")
    x, y = await page_point(writer, 0.6, 0.75)
    await writer.mouse.click(x, y)
    await writer.fill("dialog textarea", "Làm rõ mục 5.1")
    await writer.click("dialog button[type=submit]")
    pin = reader.locator(".note-pin:has-text('5.1')")
    await pin.wait_for()
    await page_point(reader, 0.6, 0.75)
    pin_box = await pin.bounding_box()
    img_box = await reader.locator("#viewer .page-wrap img").bounding_box()
    assert abs((pin_box["x"] - img_box["x"]) / img_box["width"] - 0.6) < 2 * TOLERANCE
    assert abs((pin_box["y"] - img_box["y"]) / img_box["height"] - 0.75) < 2 * TOLERANCE
    # Stored with the space it is measured in.
    token = await server.login("delegate001", DEMO_PASSWORD)
    async with server.http(token) as api:
        rows = (await api.get(f"/api/v1/files/{file_id}/annotations")).json()["annotations"]
    assert {row["space"] for row in rows} == {"page"}
    for page in pages.values():
        assert page.js_errors == []
    await asyncio.gather(*(page.context.close() for page in pages.values()))


def viewport_of(username: str) -> str:
    viewport = VIEWPORTS[username]
    return f"{viewport['width']}x{viewport['height']}"
