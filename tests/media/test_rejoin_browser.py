"""The delegate app comes back by itself after a network drop, and the chair sees who is
remote.

The tablet's WebRTC traffic passes through a UDP relay the test owns (its offer and the
server's answer are rewritten, through a Playwright route, to name the relay instead of
each other), so the test can cut the tablet's network for real: every packet both ways is
dropped and the page is put offline (HTTP and the socket) for 25 s, longer than the
server's 15 s silence timeout, so the server drops the session. The app shows the true
state within 3 s, keeps trying, and when the network returns it joins again by itself and
hears the floor (an aiortc delegate's tone). The chair's attendance marks the delegate as
remote, the minutes list them, and a speaker's lost audio shows on the chair's panel.
"""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

from playwright.async_api import TimeoutError as PlaywrightTimeout
from pypdf import PdfReader

from meeting.media.service import runtime as media_runtime
from tests.browser.conftest import TABLET, shot, signed_in, wait_online
from tests.media.conftest import Hall
from tests.media.peers import Client
from tests.media.test_browser import chromium  # noqa: F401  (the fixture)

TONE_HZ = 440.0
DROP_SECS = 25
# The app shows the drop within this (the figure).
SHOWN_WITHIN_MS = 3_000
WAIT_MS = 60_000
# Notes on the page when the drop begins and when "reconnecting" is first shown.
WATCH_FOR_THE_DROP = """() => {
  const remote = document.querySelector("#remote");
  window.shownAt = null;
  new MutationObserver(() => {
    if (window.shownAt === null && remote.dataset.state === "reconnecting") {
      window.shownAt = performance.now();
    }
  }).observe(remote, { attributes: true, attributeFilter: ["data-state"] });
  window.droppedAt = performance.now();
}"""


class Relay(asyncio.DatagramProtocol):
    """One UDP leg of the relay: what arrives is handed to ``forward``."""

    def __init__(self, forward: Any) -> None:
        self.forward = forward
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.forward(data, addr)


class Path:
    """The tablet and the server see each other at the relay's two ports, one for each:
    the server sends to ``to_tablet`` (named in the offer), the tablet to ``to_server``
    (named in the answer); each leg sends on from the other leg's socket."""

    def __init__(self, network: Network, tablet_port: int) -> None:
        self.network = network
        self.tablet = ("127.0.0.1", tablet_port)
        self.server: tuple[str, int] | None = None
        self.to_tablet = Relay(self._from_server)
        self.to_server = Relay(self._from_tablet)

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        for leg in (self.to_tablet, self.to_server):
            await loop.create_datagram_endpoint(lambda leg=leg: leg, local_addr=("127.0.0.1", 0))

    def port(self, leg: Relay) -> int:
        assert leg.transport is not None
        return int(leg.transport.get_extra_info("sockname")[1])

    def _from_server(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.network.down and self.to_server.transport is not None:
            self.to_server.transport.sendto(data, self.tablet)

    def _from_tablet(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.network.down and self.server and self.to_tablet.transport is not None:
            self.to_tablet.transport.sendto(data, self.server)

    def close(self) -> None:
        for leg in (self.to_tablet, self.to_server):
            if leg.transport is not None:
                leg.transport.close()


class Network:
    """The tablet's network: a relayed path per session, all cut at once."""

    def __init__(self) -> None:
        self.down = False
        self.paths: list[Path] = []

    async def route(self, route: Any) -> None:
        if self.down:
            await route.abort("internetdisconnected")
            return
        body = json.loads(route.request.post_data or "{}")
        offer = str(body.get("sdp", "")).split("\r\n")
        ports = {int(line.split()[5]) for line in offer if _loopback_udp(line)}
        assert len(ports) == 1, f"one loopback UDP candidate expected: {ports}"
        path = Path(self, ports.pop())
        await path.open()
        self.paths.append(path)
        body["sdp"] = _only_at(offer, path.port(path.to_tablet))
        response = await route.fetch(post_data=json.dumps(body))
        answer = await response.json()
        if response.status == 201:
            lines = str(answer["sdp"]).split("\r\n")
            server = {int(line.split()[5]) for line in lines if _loopback_udp(line)}
            assert len(server) == 1, server
            path.server = ("127.0.0.1", server.pop())
            answer["sdp"] = _only_at(lines, path.port(path.to_server))
        await route.fulfill(response=response, json=answer)

    def close(self) -> None:
        for path in self.paths:
            path.close()


def _loopback_udp(line: str) -> bool:
    parts = line.split()
    return (
        line.startswith("a=candidate")
        and len(parts) > 5
        and parts[2].lower() == "udp"
        and parts[4] == "127.0.0.1"
    )


def _only_at(lines: list[str], port: int) -> str:
    """The SDP with its loopback UDP candidates moved to ``port`` and no other candidate."""
    kept = []
    for line in lines:
        if line.startswith("a=candidate"):
            if not _loopback_udp(line):
                continue
            parts = line.split()
            parts[5] = str(port)
            line = " ".join(parts)
        kept.append(line)
    return "\r\n".join(kept)


async def _packets(page: Any) -> int:
    return int(await page.get_attribute("#remote-level", "data-packets") or 0)


async def test_the_tablet_rejoins_by_itself_after_a_network_drop(hall: Hall, chromium: Any) -> None:  # noqa: F811
    speaker = Client(TONE_HZ)
    network = Network()
    pages: list[Any] = []

    async def signal(sdp: str) -> str:
        answer = await hall.join(hall.delegates[0], sdp)
        assert answer.status_code == 201, answer.text
        return str(answer.json()["sdp"])

    try:
        await speaker.join(signal)
        speaker_id = await hall.give_floor(hall.delegates[0])
        context, page = await signed_in(
            hall.server, chromium, "delegate002", viewport={"width": 1280, "height": 800}
        )
        pages.append(page)
        await page.route(f"**/api/v1/meetings/{hall.meeting_id}/media", network.route)
        await page.goto(f"{hall.server.url}/app/delegate/#meeting/{hall.meeting_id}")
        await wait_online(page)
        # The join control is within the first screen of a 1280×800 tablet.
        join = await page.wait_for_selector("#remote[data-state=idle] #remote-join")
        box = await join.bounding_box()
        assert box is not None and box["y"] + box["height"] <= 800, box
        await page.click("#remote-join")
        await page.wait_for_selector("#remote[data-state=listening]", timeout=WAIT_MS)
        await page.wait_for_function(
            "() => Number(document.querySelector('#remote-level').dataset.packets) > 50"
            " && Number(document.querySelector('#remote-level').dataset.level) > 0.01",
            timeout=WAIT_MS,
        )

        # The network goes: nothing passes either way, the page is offline. How soon the
        # tablet shows it is read on the page's own clock, from just before the drop to the
        # change of state: the test's polling through the browser is not counted.
        await page.evaluate(WATCH_FOR_THE_DROP)
        network.down = True
        await context.set_offline(True)
        await page.wait_for_selector("#remote[data-state=reconnecting]", timeout=WAIT_MS)
        shown_at, dropped_at = await page.evaluate("[window.shownAt, window.droppedAt]")
        assert shown_at is not None, "the change to reconnecting was not seen"
        shown_ms = shown_at - dropped_at
        assert shown_ms <= SHOWN_WITHIN_MS, f"the drop was shown after {shown_ms:.0f} ms"
        assert "kết nối lại" in (await page.inner_text("#remote-status")).lower()
        await shot(page, "delegate-remote-reconnecting-tablet")
        await asyncio.sleep(DROP_SECS)
        # Meanwhile the server dropped the silent session.
        engine = media_runtime(hall.server.ctx).engine
        assert [p.user_id for p in await engine.peers(hall.meeting_id)] == [hall.delegate_ids[0]]
        assert await page.get_attribute("#remote", "data-state") == "reconnecting"

        # It returns: the app joins again by itself and hears the floor again.
        network.down = False
        await context.set_offline(False)
        await page.wait_for_selector("#remote[data-state=listening]", timeout=WAIT_MS)
        before = await _packets(page)
        await page.wait_for_function(
            "(n) => Number(document.querySelector('#remote-level').dataset.packets) > n"
            " && Number(document.querySelector('#remote-level').dataset.level) > 0.01",
            arg=before + 25,
            timeout=WAIT_MS,
        )
        peers = await engine.peers(hall.meeting_id)
        assert sorted(p.user_id for p in peers) == sorted(hall.delegate_ids[:2])
        assert len(network.paths) >= 2

        # The chair's attendance marks the delegate as remote, with the connection.
        _, chair = await signed_in(hall.server, chromium, "chair", viewport=TABLET)
        pages.append(chair)
        await chair.goto(f"{hall.server.url}/app/chair/#meeting/{hall.meeting_id}")
        await wait_online(chair)
        await chair.click("#tab-attendance")
        row = f"#attendance-table tr[data-user='{hall.delegate_ids[1]}']"
        # The connection is as measured: on a loaded machine the round trip may rate it
        # fair or poor, but it is live, so never lost.
        try:
            await chair.wait_for_selector(
                f"{row} [data-remote]:not([data-remote=lost])", timeout=WAIT_MS
            )
        except PlaywrightTimeout:
            async with hall.server.http(hall.chair) as http:
                meeting = (await http.get(f"/api/v1/meetings/{hall.meeting_id}")).json()
            entry = [
                p for p in meeting.get("participants", []) if p["user_id"] == hall.delegate_ids[1]
            ]
            raise AssertionError(f"no live remote marker; the server has {entry}") from None
        assert "trực tuyến" in (await chair.inner_text(row)).lower()
        assert await chair.is_visible(f"{row} [data-action=mute]")
        await shot(chair, "chair-attendance-remote")
        # The meeting's rule may leave remote delegates out of the quorum (and back in).
        assert await chair.is_checked("#remote-counts")
        await chair.click("#remote-counts")
        await chair.wait_for_function(
            "() => document.getElementById('quorum-text').textContent.startsWith('Có mặt 0/')",
            timeout=WAIT_MS,
        )
        await chair.click("#remote-counts")
        await chair.wait_for_function(
            "() => document.getElementById('quorum-text').textContent.startsWith('Có mặt 2/')",
            timeout=WAIT_MS,
        )

        # The speaker's audio drops: the floor is paused and the chair is alerted.
        await chair.click("#tab-live")
        assert speaker.tone is not None
        speaker.tone.stop()
        await chair.wait_for_selector("#audio-lost-alert:not(.hidden)", timeout=WAIT_MS)
        await chair.wait_for_selector("#speaker-paused")
        await shot(chair, "chair-speaker-audio-lost")
        finished = await hall.post(hall.chair, f"/speakers/{speaker_id}/finish")
        assert finished.status_code in (200, 204), finished.text

        # Given the floor, the remote delegate sees that they are live.
        await hall.give_floor(hall.delegates[1])
        await page.wait_for_selector("#remote-live:not(.hidden)", timeout=WAIT_MS)
        await shot(page, "delegate-remote-live-tablet")
        # The chair mutes them (they are told, and no longer live), then asks them to
        # unmute; the delegate unmutes with the same button.
        mine = next(
            p for p in await engine.peers(hall.meeting_id) if p.user_id == hall.delegate_ids[1]
        )
        muted = await hall.post(hall.chair, f"/media/{mine.session_id}/mute", {"muted": True})
        assert muted.status_code == 200, muted.text
        await page.wait_for_selector("#remote-mute[aria-pressed=true]", timeout=WAIT_MS)
        assert "tắt micrô" in (await page.inner_text("#remote-chair")).lower()
        assert await page.is_hidden("#remote-live")
        asked = await hall.post(hall.chair, f"/media/{mine.session_id}/unmute-request")
        assert asked.status_code == 200, asked.text
        await page.wait_for_function(
            "() => document.getElementById('remote-chair').textContent.includes('mời bạn bật')",
            timeout=WAIT_MS,
        )
        await page.click("#remote-mute")
        await page.wait_for_selector("#remote-mute[aria-pressed=false]", timeout=WAIT_MS)
        await page.wait_for_selector("#remote-live:not(.hidden)", timeout=WAIT_MS)

        # The minutes list who attended remotely.
        async with hall.server.http(hall.chair) as http:
            minutes = await http.get(f"/api/v1/meetings/{hall.meeting_id}/minutes.pdf")
        assert minutes.status_code == 200
        text = " ".join(
            "\n".join(
                p.extract_text() for p in PdfReader(io.BytesIO(minutes.content)).pages
            ).split()
        )
        start = text.index("Tham dự trực tuyến:")
        line = text[start : text.index("người)", start)]
        names = await chair.evaluate(
            "(ids) => ids.map((id) => document.querySelector("
            "`#attendance-table tr[data-user='${id}'] th`)?.firstChild?.textContent)",
            hall.delegate_ids[:2],
        )
        assert all(name and name.strip() in line for name in names), (names, line)
        assert [e for p in pages for e in p.js_errors] == []
    finally:
        for opened in pages:
            await opened.context.close()
        await speaker.close()
        network.close()


async def test_joining_on_a_second_device_moves_the_session_without_taking_it_back(
    hall: Hall,
    chromium: Any,  # noqa: F811
) -> None:
    """The same delegate joins on a tablet, then on a laptop: the tablet says the session
    moved and stays out (it does not rejoin and take it back, which would make the two
    devices take it from each other in turn); pressing join on the tablet moves it back."""
    speaker = Client(TONE_HZ)
    pages: list[Any] = []

    async def signal(sdp: str) -> str:
        answer = await hall.join(hall.delegates[0], sdp)
        assert answer.status_code == 201, answer.text
        return str(answer.json()["sdp"])

    async def listening(page: Any) -> None:
        await page.click("#remote-join")
        await page.wait_for_selector("#remote[data-state=listening]", timeout=WAIT_MS)

    async def sessions() -> list[str]:
        peers = await media_runtime(hall.server.ctx).engine.peers(hall.meeting_id)
        return [p.session_id for p in peers if p.user_id == hall.delegate_ids[1]]

    try:
        await speaker.join(signal)
        await hall.give_floor(hall.delegates[0])
        for viewport in ({"width": 800, "height": 1280}, {"width": 1440, "height": 900}):
            _, page = await signed_in(hall.server, chromium, "delegate002", viewport=viewport)
            pages.append(page)
            await page.goto(f"{hall.server.url}/app/delegate/#meeting/{hall.meeting_id}")
            await wait_online(page)
        tablet, laptop = pages
        await listening(tablet)
        await listening(laptop)

        await tablet.wait_for_selector("#remote[data-state=error]", timeout=WAIT_MS)
        assert await tablet.inner_text("#remote-status") == "Trên thiết bị khác"
        assert "thiết bị khác" in await tablet.inner_text("#remote-error")
        assert await tablet.is_visible("#remote-join")
        await shot(tablet, "delegate-remote-elsewhere-tablet")
        # Longer than a lost connection is given before a new session: nothing comes back.
        await asyncio.sleep(7)
        assert await tablet.get_attribute("#remote", "data-state") == "error"
        assert await laptop.get_attribute("#remote", "data-state") == "listening"
        assert len(await sessions()) == 1

        # Back to the tablet, on purpose: the laptop is the one told now.
        await listening(tablet)
        await laptop.wait_for_selector("#remote[data-state=error]", timeout=WAIT_MS)
        assert "thiết bị khác" in await laptop.inner_text("#remote-error")
        assert len(await sessions()) == 1
        assert [e for p in pages for e in p.js_errors] == []
    finally:
        for opened in pages:
            await opened.context.close()
        await speaker.close()
