"""Safe controls and honest poll display on the chair's panel and the tablets: closing the
session or a vote asks first and names the consequence, only allowed transitions are
offered, a closed poll reads "Đã kết thúc", every ballot says whether it is secret, counts
are read against the rule's base with percentages, an election gives a result per
candidate, a dismissed receipt never hides the result, the chair votes from the panel, and
sign-out leaves nothing of the delegate on the tablet."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from server.demo import DemoCity
from tests.browser.conftest import signed_in, wait_online
from tests.browser.test_session import prepare_meeting
from tests.conftest import DEMO_PASSWORD
from tests.harness import RunningServer

pytestmark = pytest.mark.browser

LANDSCAPE = {"width": 1280, "height": 800}
PORTRAIT = {"width": 800, "height": 1280}
CHAIR = {"width": 1440, "height": 900}


async def as_user(server: RunningServer, username: str) -> Any:
    return server.http(await server.login(username, DEMO_PASSWORD))


async def new_poll(server: RunningServer, meeting_id: int, **body: Any) -> int:
    async with await as_user(server, "chair") as api:
        created = await api.post(f"/api/v1/meetings/{meeting_id}/polls", json=body)
        assert created.status_code == 201, created.text
        poll_id = int(created.json()["id"])
        opened = await api.post(f"/api/v1/polls/{poll_id}/open")
        assert opened.status_code == 200, opened.text
    return poll_id


async def test_lifecycle_offers_only_allowed_acts_and_confirms_closing(
    server: RunningServer, city: DemoCity, browser: Any
) -> None:
    meeting_id, _, _ = await prepare_meeting(server, city)
    _, chair = await signed_in(server, browser, "chair", viewport=CHAIR)
    await chair.goto(f"{server.url}/app/chair/#meeting/{meeting_id}")
    await wait_online(chair)
    await chair.wait_for_selector("#meeting-start")
    # Before the session starts there is nothing to close.
    assert await chair.locator("#meeting-close").count() == 0
    await chair.click("#meeting-start")
    await chair.wait_for_selector("#meeting-state[data-state=in_session]")
    # Closing asks first and names what cannot be undone; cancelling changes nothing.
    await chair.click("#meeting-close")
    consequence = await chair.inner_text("dialog #confirm-consequence")
    assert "không mở lại được" in consequence and "Không thể hoàn tác" in consequence
    await chair.click("dialog button[value=cancel]")
    await chair.wait_for_selector("dialog", state="detached")
    async with await as_user(server, "chair") as api:
        assert (await api.get(f"/api/v1/meetings/{meeting_id}")).json()["state"] == "in_session"
    await chair.click("#meeting-adjourn")
    await chair.wait_for_selector("#meeting-state[data-state=adjourned]")
    await chair.click("#meeting-close")
    await chair.click("dialog button[type=submit]")
    await chair.wait_for_selector("#meeting-state[data-state=closed]")
    assert await chair.locator("#lifecycle button").count() == 0
    assert chair.js_errors == []
    await chair.context.close()


async def test_poll_display_base_percentages_election_and_chair_vote(
    server: RunningServer, city: DemoCity, browser: Any
) -> None:
    meeting_id, _, _ = await prepare_meeting(server, city)
    async with await as_user(server, "chair") as api:
        assert (await api.post(f"/api/v1/meetings/{meeting_id}/start")).status_code == 200
    _, chair = await signed_in(server, browser, "chair", viewport=CHAIR)
    _, one = await signed_in(server, browser, "delegate001", viewport=LANDSCAPE)
    _, two = await signed_in(server, browser, "delegate002", viewport=PORTRAIT)
    await chair.goto(f"{server.url}/app/chair/#meeting/{meeting_id}")
    for page in (one, two):
        await page.goto(f"{server.url}/app/delegate/#meeting/{meeting_id}")
        await wait_online(page)
        await page.click("#check-in")
        await page.wait_for_selector("#check-in[aria-pressed=true]")
    await wait_online(chair)

    # A secret resolution vote under "more than half of all delegates" (4 members: the chair
    # and three delegates, two of them present).
    poll_id = await new_poll(
        server,
        meeting_id,
        title="Nghị quyết dự toán 2027",
        kind="yes_no_abstain",
        secret=True,
        rule="majority_of_members",
    )
    for page in (one, two):
        await page.wait_for_selector(".poll-card[data-state=open] .secrecy[data-secret='1']")
        assert "Bỏ phiếu kín" in await page.inner_text(".poll-card .secrecy")
    await one.click(".vote-buttons button[data-choice=yes]")
    await one.click("#vote-confirm")
    await one.wait_for_selector("#receipt")
    # Closing the receipt card must not hide the result later.
    await one.click("#poll-dismiss")
    await one.wait_for_selector(".poll-card", state="detached")
    # The chair's count reads against all delegates, with a percentage.
    progress = chair.locator(f"#poll-cast-{poll_id}")
    await chair.wait_for_function(
        f"() => document.querySelector('#poll-cast-{poll_id}')?.textContent.includes('1/4')"
    )
    text = await progress.inner_text()
    assert "tổng số đại biểu" in text and "25\u00a0%" in text
    # The chair votes from the panel (checking in first).
    await chair.click("#chair-check-in")
    await chair.click("#chair-ballot button[data-choice=yes]")
    await chair.click("#chair-vote-confirm")
    await chair.wait_for_selector("#chair-receipt")
    await chair.wait_for_function(
        f"() => document.querySelector('#poll-cast-{poll_id}')?.textContent.includes('2/4')"
    )
    # Closing the vote asks first and names the consequence.
    await chair.click(f"#poll-list li[data-poll='{poll_id}'] button[data-action=close]")
    assert "Không thể hoàn tác" in await chair.inner_text("dialog #confirm-consequence")
    await chair.click("dialog button[type=submit]")
    closed = chair.locator(f"#poll-list li[data-poll='{poll_id}'][data-state=closed]")
    await closed.wait_for()
    assert await closed.locator(".poll-state").inner_text() == "Đã kết thúc"
    assert "50\u00a0%" in await closed.locator("li[data-choice=yes] .percent").inner_text()
    # The delegate who dismissed the receipt sees the result; so does the one who did not vote.
    for page in (one, two):
        await page.wait_for_selector(
            f".poll-card[data-poll='{poll_id}'][data-state=closed] #poll-result"
        )
        assert "THÔNG QUA" in await page.inner_text("#poll-result .verdict")
        await page.click("#poll-dismiss")

    # An election: one result per candidate.
    election = await new_poll(
        server,
        meeting_id,
        title="Bầu Ủy viên Ban Pháp chế",
        kind="choice",
        options=["Nguyễn Văn An", "Trần Thị Bình", "Lê Hoàng Cường"],
        max_choices=2,
        secret=False,
        rule="majority_of_cast",
    )
    for page in (one, two):
        await page.wait_for_selector(
            f".poll-card[data-poll='{election}'] .secrecy[data-secret='0']"
        )
        assert "công khai" in await page.inner_text(".poll-card .secrecy")
        await page.click(".vote-buttons button:has-text('Nguyễn Văn An')")
        await page.click(".poll-card .btn-primary:has-text('Xác nhận')")
        await page.click("#vote-confirm")
        await page.wait_for_selector("#receipt")
    await chair.click(f"#poll-list li[data-poll='{election}'] button[data-action=close]")
    await chair.click("dialog button[type=submit]")
    rows = chair.locator(f"#poll-list li[data-poll='{election}'] .result-bars li")
    await rows.first.wait_for()
    verdicts = await rows.evaluate_all(
        "(lis) => lis.map((li) => [li.dataset.choice, li.querySelector('[data-verdict]')"
        "?.dataset.verdict])"
    )
    assert verdicts == [
        ["Nguyễn Văn An", "elected"],
        ["Trần Thị Bình", "not_elected"],
        ["Lê Hoàng Cường", "not_elected"],
    ]
    # No single "KHÔNG THÔNG QUA" for the whole election.
    whole = chair.locator(f"#poll-list li[data-poll='{election}'] .verdict.rejected")
    assert await whole.count() == 0
    for page in (chair, one, two):
        assert page.js_errors == []
    await asyncio.gather(*(page.context.close() for page in (chair, one, two)))


async def test_sign_out_leaves_no_ballot_and_secret_choice_never_stored(
    server: RunningServer, city: DemoCity, browser: Any
) -> None:
    meeting_id, _, _ = await prepare_meeting(server, city)
    async with await as_user(server, "chair") as api:
        assert (await api.post(f"/api/v1/meetings/{meeting_id}/start")).status_code == 200
    # Signed in through the sign-in page, as on a shared tablet.
    context = await browser.new_context(viewport=PORTRAIT, locale="vi-VN", has_touch=True)
    tablet = await context.new_page()
    await tablet.goto(f"{server.url}/app/?next=/app/delegate/%23meeting/{meeting_id}")
    await tablet.fill("#username", "delegate001")
    await tablet.fill("#password", DEMO_PASSWORD)
    await tablet.click("#login-submit")
    await wait_online(tablet)
    await tablet.click("#check-in")
    await tablet.wait_for_selector("#check-in[aria-pressed=true]")
    await new_poll(
        server,
        meeting_id,
        title="Miễn nhiệm",
        kind="yes_no_abstain",
        secret=True,
        rule="two_thirds_of_members",
    )
    await tablet.click(".vote-buttons button[data-choice=no]")
    await tablet.click("#vote-confirm")
    await tablet.wait_for_selector("#receipt")
    stored = await tablet.evaluate(
        "() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])"
    )
    assert "dh.ballots" in stored and '"no"' not in stored and "choice" not in stored
    # The receipt is still there after a reload (same tab).
    await tablet.reload()
    await tablet.wait_for_selector("#receipt")
    await tablet.click("#poll-dismiss")
    await tablet.click("#logout")
    await tablet.wait_for_selector("#login-form")
    leftover = await tablet.evaluate(
        "() => [...Object.keys(localStorage), ...Object.keys(sessionStorage)]"
        ".filter((k) => k.startsWith('dh.') && k !== 'dh.lang')"
    )
    assert leftover == []
    await context.close()
