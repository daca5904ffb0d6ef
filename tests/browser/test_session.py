"""A council session in real browsers: the chair's panel, three delegate tablets, the
projector; check-in and quorum, presentation sync, the floor, a poll with receipts."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from server.demo import DemoCity
from tests.browser.conftest import PHONE, TABLET, TABLET_PORTRAIT, shot, signed_in, wait_online
from tests.browser.documents import council_pdf
from tests.harness import RunningServer

pytestmark = pytest.mark.browser


async def prepare_meeting(server: RunningServer, city: DemoCity) -> tuple[int, int, str]:
    """A scheduled meeting: the chair and three delegates, one agenda item with a PDF."""
    chair = await server.login("chair", "demo-password-1")
    async with server.http(chair) as api:
        upload = await api.post(
            "/api/v1/files", files={"file": ("to-trinh.pdf", council_pdf(5), "application/pdf")}
        )
        assert upload.status_code == 201, upload.text
        file_id = upload.json()["id"]
        created = await api.post(
            "/api/v1/meetings",
            json={
                "title": "Kỳ họp thứ 12 — HĐND thành phố",
                "starts_at": "2026-11-23T08:00:00+07:00",
                "place": "Hội trường Diên Hồng",
                "chair_ids": [city.chair_id],
                "delegate_ids": city.delegate_ids[:3],
                "secretary_ids": [city.secretary_id],
            },
        )
        assert created.status_code == 201, created.text
        meeting_id = created.json()["id"]
        item = await api.post(
            f"/api/v1/meetings/{meeting_id}/agenda",
            json={"title": "Tờ trình về dự toán ngân sách năm 2027", "document_ids": [file_id]},
        )
        assert item.status_code == 201, item.text
    return meeting_id, file_id, chair


async def checked_in_tablet(
    server: RunningServer,
    browser: Any,
    meeting_id: int,
    username: str,
    viewport: dict[str, int] | None = None,
) -> tuple[Any, Any]:
    """A delegate's tablet on the meeting (in session), checked in: (context, page)."""
    context, page = await signed_in(server, browser, username, viewport=viewport)
    await page.goto(f"{server.url}/app/delegate/#meeting/{meeting_id}")
    await wait_online(page)
    await page.click("#check-in")
    await page.wait_for_selector("#check-in[aria-pressed=true]")
    return context, page


async def test_session_in_the_hall(server: RunningServer, city: DemoCity, browser: Any) -> None:
    meeting_id, file_id, chair_token = await prepare_meeting(server, city)
    _, chair = await signed_in(server, browser, "chair")
    await chair.goto(f"{server.url}/app/chair/#meeting/{meeting_id}")
    await wait_online(chair)
    await chair.click("#meeting-start")
    await chair.wait_for_selector("#meeting-state[data-state=in_session]")

    delegates = []
    # Three tablets: landscape, portrait, and a phone.
    for n, viewport in ((1, TABLET), (2, TABLET_PORTRAIT), (3, PHONE)):
        _, page = await signed_in(server, browser, f"delegate{n:03d}", viewport=viewport)
        await page.goto(f"{server.url}/app/delegate/#meeting/{meeting_id}")
        await wait_online(page)
        delegates.append(page)
    # Check in: the chair's quorum gauge moves with each one.
    for count, page in enumerate(delegates, start=1):
        await page.click("#check-in")
        await page.wait_for_selector("#check-in[aria-pressed=true]")
        await chair.wait_for_function(
            "(n) => document.querySelector('#quorum .progress[role=progressbar]')"
            "?.getAttribute('aria-valuenow') === String(n)",
            arg=count,
        )
    assert "Có mặt 3/4, cần 3" in await chair.inner_text("#quorum-text")

    # The chair presents page 3: every tablet in follow mode turns to it.
    await chair.select_option("#current-select", label="Tờ trình về dự toán ngân sách năm 2027")
    await chair.click(f"#item-documents button[data-doc='{file_id}']")
    await chair.click("#presentation .thumbs button[data-page='3']")
    await chair.click("#present")
    await chair.wait_for_selector("#live-page")
    for page in delegates:
        await page.wait_for_selector(f"#viewer[data-file='{file_id}'][data-shown-page='3']")
    await shot(chair, "chair-panel-tablet")
    await shot(delegates[0], "delegate-page3-tablet")

    # A delegate asks for the floor; the chair grants it; everyone sees who speaks.
    await delegates[0].click("#floor-body button[data-kind=speech]")
    await delegates[0].wait_for_selector("#queue-place")
    await chair.click("#speaker-queue button[data-action=grant]")
    await chair.wait_for_selector("#speaker-timer")
    name = (await chair.inner_text("#current-speaker")).strip()
    for page in delegates:
        await page.wait_for_selector("#speaker-timer")
        assert (await page.inner_text("#current-speaker")).strip() == name

    # The projector shows the presented page and the speaker.
    _, projector = await signed_in(
        server, browser, "secretary", viewport={"width": 1280, "height": 720}
    )
    await projector.goto(f"{server.url}/app/projector/#meeting/{meeting_id}")
    await projector.wait_for_selector("#proj-page[data-page='3'] img")
    await projector.wait_for_selector("#proj-timer:not(:empty)")
    await shot(projector, "projector-page3")
    await shot(delegates[1], "delegate-speaker-portrait")
    await chair.click("#finish-speaker")

    # Turning a page by hand leaves follow mode; turning it on again snaps back.
    reader = delegates[0]
    await reader.click("#next-page")
    await reader.wait_for_selector("#viewer[data-shown-page='4']")
    assert not await reader.is_checked("#follow")
    await chair.click("#presentation .thumbs button[data-page='2']")
    await chair.click("#present")
    await delegates[1].wait_for_selector("#viewer[data-shown-page='2']")
    await projector.wait_for_selector("#proj-page[data-page='2'] img")
    assert await reader.get_attribute("#viewer", "data-shown-page") == "4"
    await reader.check("#follow")
    await reader.wait_for_selector("#viewer[data-shown-page='2']")

    # A poll: to the front of every tablet, vote through the buttons with confirmation.
    await chair.click("#new-poll summary")
    await chair.fill("#poll-title", "Thông qua Nghị quyết về dự toán ngân sách năm 2027")
    await chair.click("#create-poll")
    await chair.click("#poll-list button[data-action=open]")
    await chair.wait_for_selector("#poll-list li[data-state=open]")
    for page in delegates[:2]:
        await page.wait_for_selector(".poll-card[data-state=open]")
        await page.click(".vote-buttons button[data-choice=yes]")
        await page.wait_for_selector("#vote-confirm")
        await page.click("#vote-confirm")
        await page.wait_for_selector("#receipt")
    # The third votes with the keyboard: the poll takes the focus; Tab to "no", Enter; the
    # confirmation's question has the focus; Tab past "choose again" to confirm, Enter.
    keyboard = delegates[2]
    await keyboard.wait_for_selector(".poll-card[data-state=open] button[data-choice=yes]:focus")
    await keyboard.keyboard.press("Tab")
    await keyboard.keyboard.press("Enter")
    await keyboard.wait_for_selector("#confirm-text:focus")
    await keyboard.keyboard.press("Tab")
    await keyboard.keyboard.press("Tab")
    await keyboard.wait_for_selector("#vote-confirm:focus")
    await keyboard.keyboard.press("Enter")
    await keyboard.wait_for_selector("#receipt:focus")
    await shot(delegates[0], "delegate-receipt-tablet")
    await shot(delegates[2], "delegate-receipt-phone")
    await chair.wait_for_function(
        "() => document.querySelector('#poll-list li[data-state=open] .verdict')"
        "?.textContent.includes('3/')"
    )
    await chair.click("#poll-list button[data-action=close]")
    await chair.click("dialog button[type=submit]")
    await projector.wait_for_selector(".proj-result")
    await shot(projector, "projector-result")

    async with server.http(chair_token) as api:
        polls = (await api.get(f"/api/v1/meetings/{meeting_id}/polls")).json()["polls"]
        detail = (await api.get(f"/api/v1/polls/{polls[-1]['id']}")).json()
    tally = detail["result"]["tally"]
    assert tally["yes"] == 2 and tally["no"] == 1
    shown = await projector.eval_on_selector_all(
        ".proj-result li",
        "(lis) => lis.map((li) => [li.dataset.choice, "
        "Number(li.querySelector('.count').textContent)])",
    )
    assert {choice: n for choice, n in shown} == {k: v for k, v in tally.items()}
    for page in delegates:
        await page.wait_for_selector("#poll-result")
    await shot(delegates[0], "delegate-result-tablet")
    # The minutes, from the chair's panel.
    async with chair.expect_download() as download_info:
        await chair.click("#minutes")
    minutes = Path(await (await download_info.value).path()).read_bytes()
    assert minutes.startswith(b"%PDF")
    errors = [e for page in [chair, projector, *delegates] for e in page.js_errors]
    assert errors == []
    await asyncio.gather(*(page.context.close() for page in [chair, projector, *delegates]))


async def test_others_ballots_leave_a_keyboard_voter_where_they_are(
    server: RunningServer, city: DemoCity, browser: Any
) -> None:
    """Ballots cast meanwhile redraw the card; a delegate on the confirm button stays there."""
    meeting_id, _, chair_token = await prepare_meeting(server, city)
    base = f"/api/v1/meetings/{meeting_id}"
    others = [await server.login(f"delegate{n:03d}", "demo-password-1") for n in (2, 3)]
    async with server.http(chair_token) as api:
        assert (await api.post(base + "/start")).status_code == 200
    for token in others:
        async with server.http(token) as api:
            checked = await api.post(base + "/attendance", json={"present": True})
            assert checked.status_code == 200, checked.text
    _, page = await checked_in_tablet(server, browser, meeting_id, "delegate001")
    async with server.http(chair_token) as api:
        poll = await api.post(
            base + "/polls",
            json={"title": "Thông qua Nghị quyết", "kind": "yes_no_abstain", "secret": True},
        )
        assert poll.status_code == 201, poll.text
        poll_id = poll.json()["id"]
        assert (await api.post(f"/api/v1/polls/{poll_id}/open")).status_code == 200

    await page.wait_for_selector(".poll-card[data-state=open] button[data-choice=yes]:focus")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#confirm-text:focus")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Tab")
    await page.wait_for_selector("#vote-confirm:focus")
    for count, token in enumerate(others, start=1):
        await page.evaluate("window.cardBefore = document.querySelector('.poll-card')")
        async with server.http(token) as api:
            cast = await api.post(
                f"/api/v1/polls/{poll_id}/ballots",
                json={"choice": "no", "idempotency_key": uuid.uuid4().hex},
            )
            assert cast.status_code in (200, 201), cast.text
        # The card was drawn anew for the other's ballot...
        await page.wait_for_function(
            "() => document.querySelector('.poll-card') !== window.cardBefore"
        )
        # ...and the focus is still on "confirm", not back on the question.
        assert await page.evaluate("document.activeElement?.id") == "vote-confirm", count
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#receipt:focus")
    async with server.http(chair_token) as api:
        assert (await api.get(f"/api/v1/polls/{poll_id}")).json()["cast"] == 3
    assert page.js_errors == []


async def test_a_redraw_keeps_the_keyboards_place(
    server: RunningServer, city: DemoCity, browser: Any
) -> None:
    """Lists are drawn anew at every event; the focused control stays focused."""
    meeting_id, _, chair_token = await prepare_meeting(server, city)
    base = f"/api/v1/meetings/{meeting_id}"
    tokens = [await server.login(f"delegate{n:03d}", "demo-password-1") for n in (1, 2, 3)]
    async with server.http(chair_token) as api:
        assert (await api.post(base + "/start")).status_code == 200
    first_request = 0
    for token in tokens[:2]:
        async with server.http(token) as api:
            asked = await api.post(base + "/speakers", json={"kind": "speech"})
            assert asked.status_code == 201, asked.text
            first_request = first_request or asked.json()["id"]
    _, chair = await signed_in(server, browser, "chair", viewport={"width": 1440, "height": 900})
    await chair.goto(f"{server.url}/app/chair/#meeting/{meeting_id}")
    await wait_online(chair)
    _, tablet = await signed_in(server, browser, "delegate003")
    await tablet.goto(f"{server.url}/app/delegate/#meeting/{meeting_id}")
    await wait_online(tablet)
    grant = "#speaker-queue li:nth-child(2) button[data-action=grant]"
    await chair.focus(grant)
    label = await chair.get_attribute(grant, "aria-label")
    question = "#floor-body button[data-kind=question]"
    await tablet.focus(question)

    async def redrawn(act: Any) -> None:
        """``act``, then wait until the chair's queue and the tablet's floor are new."""
        marks = ((chair, "#speaker-queue"), (tablet, "#floor-body .row"))
        for page, container in marks:
            await page.evaluate(f"window.before = document.querySelector('{container}')")
        await act()
        for page, container in marks:
            await page.wait_for_function(
                f"() => document.querySelector('{container}') !== window.before"
            )

    async def check_in() -> None:
        async with server.http(tokens[2]) as api:
            checked = await api.post(base + "/attendance", json={"present": True})
            assert checked.status_code == 200, checked.text

    async def withdraw_the_first() -> None:
        async with server.http(tokens[0]) as api:
            gone = await api.delete(f"{base}/speakers/{first_request}")
            assert gone.status_code in (200, 204), gone.text

    # Someone checks in, then the first in the queue withdraws: each time both lists are
    # drawn anew, and the focus stays on the same person's "grant" button on the chair's
    # panel (second in the queue, then first) and on "question" on the tablet.
    for act in (check_in, withdraw_the_first):
        await redrawn(act)
        assert await chair.evaluate("document.activeElement.getAttribute('aria-label')") == label
        assert await tablet.evaluate("document.activeElement.dataset.kind") == "question"
    assert await chair.evaluate(
        "document.activeElement === document.querySelector("
        "'#speaker-queue li:nth-child(1) button[data-action=grant]')"
    )
    assert chair.js_errors == [] and tablet.js_errors == []
