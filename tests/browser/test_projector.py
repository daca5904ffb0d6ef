"""The hall's projector at 1920×1080 in each main state: before the start, presenting, a
speaker with the timer, a vote open (question, rule, running count; never a choice), the
result for the time set by ``DIENHONG_PROJECTOR_RESULT_SECS``, then the speaker again.
Screenshots of every state go to test-artifacts/."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from server.demo import seed_demo
from tests.browser.conftest import shot, signed_in
from tests.browser.test_session import prepare_meeting
from tests.conftest import DEMO_PASSWORD, MakeServer

pytestmark = pytest.mark.browser

HALL = {"width": 1920, "height": 1080}
RESULT_SECS = 45


async def view(page: Any, name: str) -> None:
    await page.wait_for_selector(f"body[data-view={name}]")


async def test_projector_states(make_server: MakeServer, browser: Any) -> None:
    server = await make_server(projector_result_secs=RESULT_SECS)
    city, _ = await seed_demo(server.ctx, password=DEMO_PASSWORD, communes=2, delegates=9)
    meeting_id, file_id, chair = await prepare_meeting(server, city)
    base = f"/api/v1/meetings/{meeting_id}"
    _, projector = await signed_in(server, browser, "secretary", viewport=HALL)
    await projector.clock.install()
    await projector.goto(f"{server.url}/app/projector/#meeting/{meeting_id}")
    await view(projector, "waiting")
    assert "chưa bắt đầu" in await projector.inner_text("#proj-page")
    assert await projector.get_attribute("body", "data-result-secs") == str(RESULT_SECS)
    await shot(projector, "projector-1-before-start")

    async with server.http(chair) as api:
        assert (await api.post(base + "/start")).status_code == 200
        item_id = (await api.get(base)).json()["agenda"][0]["id"]
        await api.post(
            base + "/presentation",
            json={"agenda_item_id": item_id, "document_id": file_id, "page": 2},
        )
    await projector.wait_for_selector("#proj-page[data-page='2'] img")
    await view(projector, "presenting")
    await shot(projector, "projector-2-presenting")

    voters = []
    for n in (1, 2, 3):
        token = await server.login(f"delegate{n:03d}", DEMO_PASSWORD)
        voters.append(token)
        async with server.http(token) as api:
            await api.post(base + "/attendance", json={"present": True})
    async with server.http(voters[0]) as api:
        speaker = (await api.post(base + "/speakers", json={"kind": "speech"})).json()
    async with server.http(chair) as api:
        await api.post(base + f"/speakers/{speaker['id']}/grant")
    await view(projector, "speaker")
    await projector.wait_for_selector("#proj-timer:not(:empty)")
    await shot(projector, "projector-3-speaker-timer")

    async with server.http(chair) as api:
        poll = (
            await api.post(
                base + "/polls",
                json={
                    "title": "Thông qua Nghị quyết về dự toán ngân sách năm 2027",
                    "kind": "yes_no_abstain",
                    "secret": True,
                    "rule": "majority_of_members",
                },
            )
        ).json()
        await api.post(f"/api/v1/polls/{poll['id']}/open")
    await view(projector, "vote")
    overlay = projector.locator(".proj-vote")
    assert "Nghị quyết về dự toán" in await overlay.inner_text()
    assert "Quá nửa tổng số đại biểu" in await overlay.inner_text()
    for n, token in enumerate(voters[:2]):
        async with server.http(token) as api:
            answer = await api.post(
                f"/api/v1/polls/{poll['id']}/ballots",
                json={"choice": "yes", "idempotency_key": f"projector-ballot-{n:04d}"},
            )
            assert answer.status_code == 201, answer.text
    await projector.wait_for_selector("#proj-count:has-text('Đã bỏ phiếu: 2/4')")
    text = await overlay.inner_text()
    # Never a choice while the vote is open.
    assert all(word not in text for word in ("Tán thành", "Không tán thành", "THÔNG QUA"))
    await shot(projector, "projector-4-vote-open")

    async with server.http(chair) as api:
        await api.post(f"/api/v1/polls/{poll['id']}/close")
    await view(projector, "result")
    assert "50\u00a0%" in await projector.inner_text(".proj-result li[data-choice=yes] .percent")
    await shot(projector, "projector-5-result")
    # The result stays for the set time, then the speaker and timer come back.
    # Playwright takes the time in seconds.
    # The pause lies 2 s ahead: a loaded machine may take longer than a few
    # milliseconds between reading the page's clock and pausing it.
    await projector.clock.pause_at((await projector.evaluate("Date.now()") + 2000) / 1000)
    await projector.clock.run_for((RESULT_SECS - 10) * 1000)
    await asyncio.sleep(0.1)
    assert await projector.get_attribute("body", "data-view") == "result"
    await projector.clock.run_for(15_000)
    await view(projector, "speaker")
    assert await projector.locator(".proj-overlay").count() == 0
    assert projector.js_errors == []
    await projector.context.close()
