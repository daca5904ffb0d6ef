"""The delegate tablet offline: the meeting's documents downloaded ahead (progress to the
end), the app and the last known state back after a reload without the network, every
document readable page by page, an annotation written offline stored once on return, and
the live session followed again afterwards."""

from __future__ import annotations

from typing import Any

import pytest

from server.demo import DemoCity
from tests.browser.conftest import shot, signed_in, wait_online
from tests.browser.documents import council_pdf
from tests.browser.test_annotations import drag, my_annotations
from tests.browser.test_session import prepare_meeting
from tests.harness import RunningServer

pytestmark = pytest.mark.browser

PORTRAIT = {"width": 800, "height": 1280}
LANDSCAPE = {"width": 1280, "height": 800}


async def second_document(server: RunningServer, chair: str, meeting_id: int) -> tuple[int, int]:
    async with server.http(chair) as api:
        upload = await api.post(
            "/api/v1/files", files={"file": ("bao-cao.pdf", council_pdf(3), "application/pdf")}
        )
        assert upload.status_code == 201, upload.text
        item = await api.post(
            f"/api/v1/meetings/{meeting_id}/agenda",
            json={"title": "Báo cáo kinh tế - xã hội", "document_ids": [upload.json()["id"]]},
        )
        assert item.status_code == 201, item.text
    return int(upload.json()["id"]), int(item.json()["id"])


async def read_through(page: Any, file_id: int, pages: int) -> None:
    await page.click(f"#agenda button[data-doc='{file_id}']")
    await page.wait_for_selector(f"#viewer[data-file='{file_id}'][data-shown-page='1']")
    for number in range(2, pages + 1):
        await page.click("#next-page")
        await page.wait_for_selector(f"#viewer[data-file='{file_id}'][data-shown-page='{number}']")


@pytest.mark.parametrize("viewport", [PORTRAIT, LANDSCAPE], ids=["portrait", "landscape"])
async def test_read_and_annotate_offline_then_follow_the_chair(
    server: RunningServer, city: DemoCity, browser: Any, viewport: dict[str, int]
) -> None:
    meeting_id, first_id, chair = await prepare_meeting(server, city)
    second_id, _ = await second_document(server, chair, meeting_id)
    context, page = await signed_in(server, browser, "delegate001", viewport=viewport)
    webp: list[str] = []
    page.on("request", lambda r: webp.append(r.url) if ".webp?width=" in r.url else None)
    await page.goto(f"{server.url}/app/delegate/#meeting/{meeting_id}")
    await wait_online(page)
    # Everything is downloaded in the background, with its progress shown.
    await page.wait_for_selector("#preload-status[data-done='2'][data-total='2']")
    assert "2/2" in await page.text_content("#preload-status")
    assert webp, "page images are asked for in WebP"

    await context.set_offline(True)
    await page.reload()
    await page.wait_for_selector("#offline-state:not(.hidden)")
    assert "Ngoại tuyến" in await page.text_content("#offline-state")
    assert await page.text_content("#meeting-title") == "Kỳ họp thứ 12 — HĐND thành phố"
    await read_through(page, first_id, 5)
    await read_through(page, second_id, 3)
    await page.click(".tool[data-tool=note]")
    await drag(page, [(0.5, 0.5), (0.5, 0.5)])
    await page.fill("dialog textarea", "Ghi chú viết khi mất mạng")
    await page.click("dialog button[type=submit]")
    await page.wait_for_selector(".note-pin:has-text('mất mạng')")
    name = "portrait" if viewport is PORTRAIT else "landscape"
    await shot(page, f"delegate-offline-{name}")
    assert await my_annotations(server, "delegate001", second_id) == []

    await context.set_offline(False)
    for _ in range(150):
        rows = await my_annotations(server, "delegate001", second_id)
        if rows:
            break
        await page.wait_for_timeout(100)
    assert [row["data"]["text"] for row in rows] == ["Ghi chú viết khi mất mạng"]
    await page.wait_for_selector("#offline-state.hidden", state="attached")
    # Sent once: a reload (which sends what is still queued) adds nothing.
    await page.reload()
    await wait_online(page)
    await read_through(page, second_id, 3)
    await page.wait_for_selector(".note-pin:has-text('mất mạng')")
    assert len(await my_annotations(server, "delegate001", second_id)) == 1

    # Live again: the tablet follows the chair's page turns.
    await page.check("#follow")
    async with server.http(chair) as api:
        state = (await api.get(f"/api/v1/meetings/{meeting_id}")).json()
        item_id = state["agenda"][0]["id"]
        started = await api.post(f"/api/v1/meetings/{meeting_id}/start")
        assert started.status_code in (200, 204), started.text
        shown = await api.post(
            f"/api/v1/meetings/{meeting_id}/presentation",
            json={"agenda_item_id": item_id, "document_id": first_id, "page": 4},
        )
        assert shown.status_code in (200, 201, 204), shown.text
    await page.wait_for_selector(f"#viewer[data-file='{first_id}'][data-shown-page='4']")
    assert page.js_errors == []


async def test_the_ballot_screen_says_voting_is_never_offline(
    server: RunningServer, city: DemoCity, browser: Any
) -> None:
    meeting_id, _, chair = await prepare_meeting(server, city)
    context, page = await signed_in(server, browser, "delegate001", viewport=LANDSCAPE)
    await page.goto(f"{server.url}/app/delegate/#meeting/{meeting_id}")
    await wait_online(page)
    async with server.http(chair) as api:
        started = await api.post(f"/api/v1/meetings/{meeting_id}/start")
        assert started.status_code in (200, 204), started.text
    await page.click("#check-in")
    await page.wait_for_selector("#check-in[aria-pressed=true]")
    async with server.http(chair) as api:
        poll = await api.post(
            f"/api/v1/meetings/{meeting_id}/polls", json={"title": "Thông qua Nghị quyết"}
        )
        assert poll.status_code == 201, poll.text
        opened = await api.post(f"/api/v1/polls/{poll.json()['id']}/open")
        assert opened.status_code in (200, 204), opened.text
    await page.wait_for_selector(".poll-card[data-state=open] button[data-choice=yes]")

    await context.set_offline(True)
    await page.wait_for_selector(".poll-card[data-state=offline] #vote-offline")
    assert "ngoại tuyến" in await page.text_content("#vote-offline")
    assert await page.locator(".vote-buttons button").count() == 0
    await shot(page, "delegate-vote-offline")
    await context.set_offline(False)
    await wait_online(page)
    await page.wait_for_selector(".poll-card[data-state=open] button[data-choice=yes]")


async def test_sign_out_removes_the_offline_copies(
    server: RunningServer, city: DemoCity, browser: Any
) -> None:
    meeting_id, _, _ = await prepare_meeting(server, city)
    _, page = await signed_in(server, browser, "delegate001", viewport=LANDSCAPE)
    await page.goto(f"{server.url}/app/delegate/#meeting/{meeting_id}")
    await wait_online(page)
    await page.wait_for_selector("#preload-status[data-done='1'][data-total='1']")
    kept = "async () => (await caches.keys()).filter((n) => n.startsWith('dh-delegate-'))"
    assert "dh-delegate-pages" in await page.evaluate(kept)
    assert await page.evaluate("Object.keys(localStorage).some((k) => k.startsWith('dh.offline.'))")
    await page.click("#logout")
    await page.wait_for_url(f"{server.url}/app/")
    assert await page.evaluate(kept) == []
    assert not await page.evaluate(
        "Object.keys(localStorage).some((k) => k.startsWith('dh.offline.'))"
    )


PAGES_CACHED = (
    "async () => { const c = await caches.open('dh-delegate-pages');"
    " return (await c.keys()).length; }"
)


async def test_publishing_downloads_the_documents_to_every_open_tablet(
    server: RunningServer, city: DemoCity, browser: Any
) -> None:
    meeting_id, first_id, chair = await prepare_meeting(server, city)
    second_id, _ = await second_document(server, chair, meeting_id)
    # The delegate's tablet is on, on the list of meetings: nothing of this one is open.
    _, tablet = await signed_in(server, browser, "delegate002", viewport=PORTRAIT)
    await tablet.goto(f"{server.url}/app/delegate/")
    await wait_online(tablet)
    await tablet.wait_for_function("() => !!navigator.serviceWorker.controller")
    assert await tablet.evaluate(PAGES_CACHED) == 0

    _, secretary = await signed_in(server, browser, "secretary", viewport=LANDSCAPE)
    await secretary.goto(f"{server.url}/app/prepare/#meeting/{meeting_id}")
    await secretary.wait_for_selector("#publish")
    await secretary.click("#publish")
    await tablet.wait_for_selector(
        f"#preload-status[data-meeting='{meeting_id}'][data-done='2'][data-total='2']"
    )
    assert "2/2" in await tablet.text_content("#preload-status")
    # Every page of both documents (5 + 3) is on the device, and the meeting never opened.
    assert await tablet.evaluate(PAGES_CACHED) == 8
    assert await tablet.evaluate("location.hash") == ""
    await shot(tablet, "delegate-preloaded-on-publish")

    # "Download for every delegate" asks again: a tablet that lost its copies fetches them.
    await tablet.evaluate("async () => caches.delete('dh-delegate-pages')")
    await secretary.click("#preload-all")
    await secretary.wait_for_selector(".toast:has-text('tải trước')")
    await tablet.wait_for_selector(
        f"#preload-status[data-meeting='{meeting_id}'][data-done='2'][data-total='2']"
    )
    # The cache was deleted under the service worker's feet (which a tablet never does):
    # wait until the refilled one holds every page of both documents.
    await tablet.wait_for_function(
        """async ([first, second]) => {
            const urls = (await (await caches.open('dh-delegate-pages')).keys()).map((r) => r.url);
            return urls.length === 8 && urls.some((u) => u.includes(`/files/${first}/pages/`))
                && urls.some((u) => u.includes(`/files/${second}/pages/`));
        }""",
        arg=[first_id, second_id],
    )
    assert tablet.js_errors == [] and secretary.js_errors == []
