"""Accessibility of the session pages: axe-core (axe-playwright-python) finds no serious or
critical violation on the delegate tablet, the chair's console and the projector in their
main states (colour contrast included: text at least 4.5:1), and the controls are reached
with the keyboard."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from axe_playwright_python.async_playwright import Axe

from server.demo import DemoCity
from tests.browser.conftest import signed_in, wait_online
from tests.browser.test_session import prepare_meeting
from tests.harness import RunningServer

pytestmark = pytest.mark.browser

SERIOUS = {"serious", "critical"}


async def violations(page: Any, where: str) -> list[str]:
    results = await Axe().run(page)
    found = []
    for violation in results.response["violations"]:
        if violation["impact"] in SERIOUS:
            targets = [node["target"] for node in violation["nodes"]][:5]
            found.append(f"{where}: {violation['id']} ({violation['impact']}) {targets}")
    return found


async def tab_reaches(page: Any, selector: str, presses: int = 80) -> bool:
    """Pressing Tab from the top of the page reaches the element."""
    await page.evaluate("() => document.activeElement?.blur()")
    for _ in range(presses):
        await page.keyboard.press("Tab")
        if await page.evaluate("(s) => document.activeElement?.matches(s)", selector):
            return True
    return False


async def test_no_serious_violation_and_keyboard_reach(
    server: RunningServer, city: DemoCity, browser: Any
) -> None:
    meeting_id, file_id, chair_token = await prepare_meeting(server, city)
    base = f"/api/v1/meetings/{meeting_id}"
    found: list[str] = []
    _, chair = await signed_in(server, browser, "chair", viewport={"width": 1440, "height": 900})
    _, tablet = await signed_in(
        server, browser, "delegate001", viewport={"width": 800, "height": 1280}
    )
    _, projector = await signed_in(
        server, browser, "secretary", viewport={"width": 1920, "height": 1080}
    )
    await chair.goto(f"{server.url}/app/chair/#meeting/{meeting_id}")
    await tablet.goto(f"{server.url}/app/delegate/#meeting/{meeting_id}")
    await projector.goto(f"{server.url}/app/projector/#meeting/{meeting_id}")
    for page in (chair, tablet):
        await wait_online(page)
    await projector.wait_for_selector("body[data-view]")
    # Before the start.
    found += await violations(chair, "chair, before the start")
    found += await violations(tablet, "tablet, before the start")
    found += await violations(projector, "projector, before the start")

    # In session, a page presented, a speaker with the timer.
    async with server.http(chair_token) as api:
        await api.post(base + "/start")
        item_id = (await api.get(base)).json()["agenda"][0]["id"]
        await api.post(
            base + "/presentation",
            json={"agenda_item_id": item_id, "document_id": file_id, "page": 2},
        )
    await tablet.click("#check-in")
    await tablet.wait_for_selector("#viewer[data-shown-page='2']")
    await tablet.click("#floor-body button[data-kind=speech]")
    await chair.wait_for_selector("#grant-next:not([disabled])")
    await chair.click("#grant-next")
    await chair.wait_for_selector("#speaker-timer")
    await projector.wait_for_selector("body[data-view=speaker]")
    found += await violations(chair, "chair, presenting with a speaker")
    found += await violations(tablet, "tablet, presenting with a speaker")
    found += await violations(projector, "projector, speaker")
    await chair.click("#tab-attendance")
    await chair.wait_for_selector("#attendance-table")
    found += await violations(chair, "chair, attendance")
    await chair.click("#tab-live")

    # A vote open, then its result.
    async with server.http(chair_token) as api:
        poll = (
            await api.post(
                base + "/polls",
                json={
                    "title": "Thông qua Nghị quyết",
                    "kind": "yes_no_abstain",
                    "secret": True,
                    "rule": "majority_of_members",
                },
            )
        ).json()
        await api.post(f"/api/v1/polls/{poll['id']}/open")
    await tablet.wait_for_selector(".poll-card[data-state=open]")
    await projector.wait_for_selector("body[data-view=vote]")
    found += await violations(chair, "chair, vote open")
    found += await violations(tablet, "tablet, vote open")
    found += await violations(projector, "projector, vote open")
    await tablet.click(".vote-buttons button[data-choice=yes]")
    await tablet.click("#vote-confirm")
    await tablet.wait_for_selector("#receipt")
    async with server.http(chair_token) as api:
        await api.post(f"/api/v1/polls/{poll['id']}/close")
    await tablet.wait_for_selector("#poll-result")
    await projector.wait_for_selector("body[data-view=result]")
    await chair.wait_for_selector("#poll-list li[data-state=closed] .poll-result")
    found += await violations(chair, "chair, result")
    found += await violations(tablet, "tablet, result")
    found += await violations(projector, "projector, result")
    assert found == [], "\n".join(found)

    # The keyboard reaches the controls that matter.
    await tablet.click("#poll-dismiss")
    await chair.click("#finish-speaker")
    await tablet.wait_for_selector("#floor-body button[data-kind]")
    for selector in (
        "#download-annotated",
        "#follow",
        "#next-page",
        ".tool[data-tool=pen]",
        "#floor-body button[data-kind=point_of_order]",
    ):
        assert await tab_reaches(tablet, selector), selector
    for selector in (
        "#meeting-adjourn",
        "#current-select",
        "#present-next",
        "#tab-attendance",
        "#new-poll summary",
    ):
        assert await tab_reaches(chair, selector), selector
    await asyncio.gather(*(page.context.close() for page in (chair, tablet, projector)))
