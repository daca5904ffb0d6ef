"""The sender's side in a browser: the acknowledgement board moves a unit's tile live when
the unit acknowledges (without reordering), filters by state; an answer goes to the thread
of the unit it answers, never to a default unit."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from server.demo import DemoCity
from tests.browser.conftest import shot, signed_in, wait_online
from tests.harness import RunningServer
from tests.messaging.support import directive_body, issue, token

pytestmark = pytest.mark.browser

STANDING_DESKTOP = {"width": 1440, "height": 900}
CLERK_DESKTOP = {"width": 1366, "height": 768}

TILE_ORDER = "() => [...document.querySelectorAll('#board-grid > li')].map((li) => li.dataset.unit)"


async def test_board_updates_a_units_tile_live(
    server: RunningServer, city: DemoCity, browser: Any
) -> None:
    standing = await token(server, "standing")
    due = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    issued = await issue(
        server,
        standing,
        directive_body(
            city.commune_unit_ids,
            urgency="very_urgent",
            due_at=due,
            title="Báo cáo thiệt hại sau bão số 9",
        ),
    )
    directive_id = issued["id"]
    _, sender = await signed_in(server, browser, "standing", viewport=STANDING_DESKTOP)
    await sender.goto(f"{server.url}/app/chat/#board/{directive_id}")
    await wait_online(sender)
    await sender.wait_for_selector("#board-grid > li")
    assert await sender.locator("#board-grid > li").count() == 6
    assert "0/6" in await sender.inner_text("#board-summary")
    before = await sender.evaluate(TILE_ORDER)

    third = city.commune_unit_ids[2]
    async with server.http(await token(server, "ward003")) as http:
        acked = await http.post(
            f"/api/v1/directives/{directive_id}/ack",
            json={"note": "Đã rà soát, không có thiệt hại về người."},
        )
        assert acked.status_code == 200, acked.text
    tile = f"#board-grid > li[data-unit='{third}']"
    await sender.wait_for_selector(f"{tile}[data-state=acknowledged]")
    assert "không có thiệt hại" in await sender.inner_text(tile)
    assert "Xác nhận" in await sender.inner_text(tile)  # its acknowledgement time
    await sender.wait_for_function(
        "() => document.querySelector('#board-summary').textContent.includes('1/6')"
    )
    await sender.wait_for_function(
        "() => document.querySelector('#board-stats .stat-acknowledged strong')"
        ".textContent.trim() === '1/6'"
    )
    # Nothing moved under the reader's eyes.
    assert await sender.evaluate(TILE_ORDER) == before
    await shot(sender, "chat-board-1440")

    # Filter: only the units that have not acknowledged.
    await sender.select_option("#board-state-filter", "unacked")
    assert await sender.locator("#board-grid > li").count() == 5
    assert await sender.locator(tile).count() == 0
    await sender.select_option("#board-state-filter", "acknowledged")
    assert await sender.locator("#board-grid > li").count() == 1
    # Sorted by acknowledgement time: the unit that acknowledged first comes first.
    await sender.select_option("#board-state-filter", "all")
    await sender.select_option("#board-sort", "acknowledged")
    assert (await sender.evaluate(TILE_ORDER))[0] == str(third)

    # The list of sent instructions shows each one's progress.
    await sender.goto(f"{server.url}/app/chat/#sent")
    progress = f"#sent-list li[data-directive='{directive_id}'] .sent-progress"
    await sender.wait_for_selector(progress)
    assert "1/6" in await sender.inner_text(progress)
    assert sender.js_errors == []
    await sender.context.close()


async def test_an_answer_goes_to_the_unit_it_answers(
    server: RunningServer, city: DemoCity, browser: Any
) -> None:
    standing = await token(server, "standing")
    issued = await issue(server, standing, directive_body(city.commune_unit_ids))
    directive_id = issued["id"]
    second, third = city.commune_unit_ids[1], city.commune_unit_ids[2]
    for username, text in (
        ("ward002", "Xã 002 xin hướng dẫn về kinh phí."),
        ("ward003", "Phường 003 đã triển khai."),
    ):
        async with server.http(await token(server, username)) as http:
            posted = await http.post(
                f"/api/v1/directives/{directive_id}/replies", json={"body": text}
            )
            assert posted.status_code == 201, posted.text
    _, ward = await signed_in(server, browser, "ward002", viewport=CLERK_DESKTOP)
    await ward.goto(f"{server.url}/app/chat/#directive/{directive_id}")
    await wait_online(ward)
    await ward.wait_for_selector("#reply-list .message:has-text('kinh phí')")

    _, sender = await signed_in(server, browser, "standing", viewport=STANDING_DESKTOP)
    await sender.goto(f"{server.url}/app/chat/#directive/{directive_id}")
    await wait_online(sender)
    await sender.wait_for_selector(f"#thread-list .thread[data-unit='{third}']")
    # No unit is chosen for the sender: there is no select defaulting to the first unit.
    assert await sender.locator("select#reply-unit, #reply-form").count() == 0
    await shot(sender, "chat-threads-1440")
    await sender.click(f"#thread-list .thread[data-unit='{second}'] a.answer-unit")
    await sender.wait_for_url(f"**#thread/{directive_id}/{second}")
    assert "Xã 002" in await sender.inner_text("#reply-form label[for=reply-body]")
    await sender.wait_for_selector("#reply-list .message:has-text('kinh phí')")
    assert await sender.locator("#reply-list .message:has-text('Phường 003')").count() == 0
    await sender.fill("#reply-body", "Kinh phí lấy từ nguồn dự phòng của xã.")
    await sender.click("#reply-send")
    # The ward that asked sees the answer live; the other ward's thread has none of it.
    await ward.wait_for_selector("#reply-list .message:has-text('nguồn dự phòng')")
    async with server.http(await token(server, "ward003")) as http:
        theirs = (await http.get(f"/api/v1/directives/{directive_id}/replies")).json()
    assert [r["body"] for r in theirs["replies"]] == ["Phường 003 đã triển khai."]

    # A unit that has not written yet is found by typing its name, never preselected.
    await sender.goto(f"{server.url}/app/chat/#directive/{directive_id}")
    await sender.fill("#thread-unit-search", "phuong 005")
    fifth = city.commune_unit_ids[4]
    await sender.click(f"#thread-unit-results a[href='#thread/{directive_id}/{fifth}']")
    await sender.wait_for_selector(f"section[data-unit='{fifth}'] #reply-form")
    assert sender.js_errors == [] and ward.js_errors == []
    await asyncio.gather(sender.context.close(), ward.context.close())
