"""Network truth on a tablet: a link that silently stops passing data shows the
disconnected banner within 5 s; after a server restart the page tries again within half a
second and never waits long between tries; a ballot whose answer is lost says so in
Vietnamese and is sent again with the same idempotency key until its fate is known.

Time on the page is Playwright's controlled clock: the tests move it forward and never
wait for wall-clock deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any

import pytest

from server.demo import DemoCity
from tests.browser.conftest import signed_in, wait_online
from tests.browser.test_session import checked_in_tablet, prepare_meeting
from tests.conftest import DEMO_PASSWORD
from tests.harness import RunningServer

pytestmark = pytest.mark.browser

# The page records when it opens each socket (its own clock, which the test controls).
COUNT_SOCKETS = """(() => {
  const Native = window.WebSocket;
  window.__wsOpenedAt = [];
  window.WebSocket = class extends Native {
    constructor(...args) { super(...args); window.__wsOpenedAt.push(Date.now()); }
  };
})();"""


class Relay:
    """A TCP relay in front of the server that can stop passing data (a silent link) or
    cut and refuse connections (a restarting server)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.refusing = False
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writers += [writer, up_writer]
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await src.read(65536):
                await self.flowing.wait()
                dst.write(data)
                await dst.drain()
        dst.close()

    def cut(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers.clear()

    async def stop(self) -> None:
        self.cut()
        for task in list(self.tasks):
            task.cancel()
        if self.server is not None:
            self.server.close()


async def fake_now(page: Any) -> int:
    now: int = await page.evaluate("Date.now()")
    return now


CONNECTING = "() => window.dhRealtime?.ws?.readyState === 0"


async def run_for(page: Any, ms: int, step: int = 100, settle: bool = False) -> None:
    """Move the page's clock forward in steps, letting real network events in between.

    With ``settle``, the clock waits while a socket is still connecting (on a loaded
    machine a refused connection can take a while to be reported), so the page's own time
    between tries does not depend on how busy the machine is.
    """
    for _ in range(ms // step):
        await page.clock.run_for(step)
        await asyncio.sleep(0.02)
        for _ in range(250 if settle else 0):
            if not await page.evaluate(CONNECTING):
                break
            await asyncio.sleep(0.02)


async def test_dead_link_and_restart(server: RunningServer, city: DemoCity, browser: Any) -> None:
    meeting_id, _, _ = await prepare_meeting(server, city)
    relay = Relay(int(server.url.rsplit(":", 1)[1]))
    await relay.start()
    context, page = await signed_in(
        server, browser, "delegate001", viewport={"width": 1280, "height": 800}
    )
    try:
        await context.add_init_script(COUNT_SOCKETS)
        await page.clock.install()
        await page.goto(f"{relay.url}/app/delegate/#meeting/{meeting_id}")
        await wait_online(page)

        # The link stops passing data: no close, no `offline` event.
        relay.flowing.clear()
        # A moment ahead of the page's clock (seconds), so that time cannot have passed it
        # by when the pause reaches the page on a loaded machine.
        await page.clock.pause_at((await fake_now(page) + 500) / 1000)
        await run_for(page, 5_000)
        assert await page.locator("#offline-banner").count() == 1
        assert await page.get_attribute("#conn-status", "data-status") != "online"
        # The banner stays while the page tries again over the dead link.
        await run_for(page, 3_000)
        assert await page.locator("#offline-banner").count() == 1

        # The link passes data again: the page comes back by itself.
        relay.cut()
        relay.flowing.set()
        await run_for(page, 3_000)
        await wait_online(page)
        assert await page.locator("#offline-banner").count() == 0

        # The server restarts: every socket is cut and connections are refused for 10 s.
        before = len(await page.evaluate("window.__wsOpenedAt"))
        cut_at = await fake_now(page)
        relay.refusing = True
        relay.cut()
        await run_for(page, 10_000, settle=True)
        opened = (await page.evaluate("window.__wsOpenedAt"))[before:]
        assert opened, "the page never tried again"
        assert opened[0] - cut_at <= 600, opened[0] - cut_at
        gaps = [b - a for a, b in itertools.pairwise(opened)]
        assert gaps and max(gaps) <= 2_500, gaps
        # Back: online again within one short wait.
        relay.refusing = False
        await run_for(page, 2_500, settle=True)
        await wait_online(page)
        assert page.js_errors == []
    finally:
        await context.close()
        await relay.stop()


async def test_ballot_with_a_lost_answer_is_resent_with_the_same_key(
    server: RunningServer, city: DemoCity, browser: Any
) -> None:
    meeting_id, _, chair_token = await prepare_meeting(server, city)
    async with server.http(chair_token) as api:
        assert (await api.post(f"/api/v1/meetings/{meeting_id}/start")).status_code == 200
    context, page = await checked_in_tablet(
        server, browser, meeting_id, "delegate001", viewport={"width": 800, "height": 1280}
    )
    async with server.http(chair_token) as api:
        created = await api.post(
            f"/api/v1/meetings/{meeting_id}/polls",
            json={
                "title": "Thông qua Nghị quyết",
                "kind": "yes_no_abstain",
                "secret": True,
                "rule": "majority_of_members",
            },
        )
        poll_id = created.json()["id"]
        assert (await api.post(f"/api/v1/polls/{poll_id}/open")).status_code == 200

    sent: list[dict[str, Any]] = []
    first_receipt: list[str] = []
    release = asyncio.Event()

    async def lossy(route: Any) -> None:
        sent.append(route.request.post_data_json)
        if len(sent) == 1:
            # The server counts the ballot; its answer never reaches the tablet.
            response = await route.fetch()
            first_receipt.append((await response.json())["receipt"])
            await route.abort("connectionreset")
        else:
            await release.wait()
            await route.continue_()

    await page.route(f"**/api/v1/polls/{poll_id}/ballots", lossy)
    await page.click(".vote-buttons button[data-choice=yes]")
    await page.click("#vote-confirm")
    status = page.locator("#ballot-status[data-status=unknown]")
    await status.wait_for()
    assert "chưa biết phiếu đã được ghi nhận" in await status.inner_text()
    assert "Failed to fetch" not in await page.inner_text("body")
    release.set()
    await page.wait_for_selector("#receipt")
    assert await page.inner_text("#receipt") == first_receipt[0]
    keys = {body["idempotency_key"] for body in sent}
    assert len(sent) >= 2 and len(keys) == 1
    token = await server.login("delegate001", DEMO_PASSWORD)
    async with server.http(token) as api:
        assert (await api.get(f"/api/v1/polls/{poll_id}")).json()["cast"] == 1
    assert page.js_errors == []
    await context.close()
