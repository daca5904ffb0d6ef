"""A real Chromium joins a meeting's media through the API and hears the floor.

The page is served by the test itself on the API's origin (Playwright answers one path of
it), so this test touches none of the web client's files: it signs in, takes the fake
microphone, offers with ICE gathered, posts the offer to ``/api/v1/meetings/{id}/media`` and
measures the loudest frequency of what it receives with WebAudio; given the floor, its fake
microphone is heard by an aiortc listener. Only its 127.0.0.1
candidate is offered to the server, and the test checks that the server's peer never
learned any other address.

The second test goes through the delegate app itself: its "join remotely" button takes the
fake microphone, joins, and the page's level meter shows the floor's audio arriving; mute,
leave (``media.left`` with reason ``left``) and a refusal shown to an outsider. The app's
offers pass through a Playwright route that keeps their 127.0.0.1 candidates only.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from meeting.media.service import runtime as media_runtime
from tests.browser.conftest import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PHONE,
    TABLET,
    TABLET_PORTRAIT,
    shot,
    signed_in,
    wait_online,
)
from tests.harness import IN_CI
from tests.media.conftest import Hall
from tests.media.peers import Client

TONE_HZ = 440.0
PAGE = "/__media_test__.html"

PAGE_HTML = """<!doctype html><meta charset="utf-8"><title>media test</title>
<audio id="out" autoplay muted></audio>
<script>
window.result = {state: "starting"};
async function join(meetingId, token) {
  const pc = new RTCPeerConnection({iceServers: []});
  window.pc = pc;
  const mic = await navigator.mediaDevices.getUserMedia({audio: true, video: false});
  mic.getTracks().forEach(t => pc.addTrack(t, mic));
  pc.addEventListener("track", ev => {
    const stream = ev.streams[0] || new MediaStream([ev.track]);
    document.getElementById("out").srcObject = stream;
    const ctx = new AudioContext();
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 8192;
    ctx.createMediaStreamSource(stream).connect(analyser);
    window.peak = () => {
      const bins = new Float32Array(analyser.frequencyBinCount);
      analyser.getFloatFrequencyData(bins);
      let best = 0;
      for (let i = 1; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
      return {hz: best * ctx.sampleRate / analyser.fftSize, db: bins[best]};
    };
  });
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(resolve => {
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange",
      () => pc.iceGatheringState === "complete" && resolve());
  });
  // Loopback only: the server must never be told of another address of this machine.
  const sdp = pc.localDescription.sdp.split("\\r\\n").filter(
    line => !line.startsWith("a=candidate") || line.includes(" 127.0.0.1 ")).join("\\r\\n");
  const response = await fetch(`/api/v1/meetings/${meetingId}/media`, {
    method: "POST",
    headers: {"Content-Type": "application/json", "Authorization": `Bearer ${token}`},
    body: JSON.stringify({sdp, type: "offer"}),
  });
  const answer = await response.json();
  if (response.status !== 201) { window.result = {state: "refused", answer}; return; }
  await pc.setRemoteDescription({type: "answer", sdp: answer.sdp});
  window.result = {state: "joined", session_id: answer.session_id};
}
</script>"""


@pytest.fixture
async def chromium() -> Any:
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is missing: the browser tests must run in CI")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                *CHROMIUM_ARGS,
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                "--allow-loopback-in-peer-connection",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        try:
            yield launched
        finally:
            await launched.close()


async def test_chromium_joins_and_hears_the_floor(hall: Hall, chromium: Any) -> None:
    speaker = Client(TONE_HZ)
    sessions: list[str] = []

    async def signal(sdp: str) -> str:
        answer = await hall.join(hall.delegates[0], sdp)
        assert answer.status_code == 201, answer.text
        sessions.append(answer.json()["session_id"])
        return str(answer.json()["sdp"])

    context = await chromium.new_context()
    try:
        await speaker.join(signal)
        speaker_id = await hall.give_floor(hall.delegates[0])
        page = await context.new_page()
        await page.route(
            f"{hall.server.url}{PAGE}",
            lambda route: route.fulfill(body=PAGE_HTML, content_type="text/html"),
        )
        await page.goto(f"{hall.server.url}{PAGE}")
        async with hall.server.socket(hall.chair) as ws:
            await ws.subscribe({hall.topic: 0})
            await page.evaluate(f"join({hall.meeting_id}, {json.dumps(hall.delegates[1])})")
            result = await page.evaluate("window.result")
            assert result["state"] == "joined", result
            joined = await ws.next_event("media.joined")
            while joined["data"]["session_id"] != result["session_id"]:
                joined = await ws.next_event("media.joined")
            assert joined["data"]["user_id"] == hall.delegate_ids[1]

        # The browser hears the floor: the speaker's tone is the loudest frequency.
        peak: dict[str, float] = {}
        for _ in range(100):
            peak = await page.evaluate("window.peak ? window.peak() : {hz: 0, db: -1000}")
            if abs(peak["hz"] - TONE_HZ) < 15 and peak["db"] > -60:
                break
            await asyncio.sleep(0.1)
        assert abs(peak["hz"] - TONE_HZ) < 15 and peak["db"] > -60, peak
        stats: list[Any] = []
        for _ in range(50):
            stats = await page.evaluate("""async () => {
                const found = [];
                (await window.pc.getStats()).forEach(s => {
                  if (s.type === "inbound-rtp" && s.kind === "audio")
                    found.push(s.packetsReceived);
                  if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded")
                    found.push("pair");
                });
                return found;
            }""")
            if "pair" in stats and any(isinstance(n, int) and n > 50 for n in stats):
                break
            await asyncio.sleep(0.1)
        assert "pair" in stats and any(isinstance(n, int) and n > 50 for n in stats), stats

        # Given the floor, the browser's (fake) microphone is heard by an aiortc listener.
        listener = Client(None)
        try:

            async def listener_signal(sdp: str) -> str:
                answer = await hall.join(hall.delegates[2], sdp)
                assert answer.status_code == 201, answer.text
                return str(answer.json()["sdp"])

            await listener.join(listener_signal)
            finished = await hall.post(hall.chair, f"/speakers/{speaker_id}/finish")
            assert finished.status_code in (200, 204), finished.text
            await hall.give_floor(hall.delegates[1])
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            loudest = 0.0
            while loudest < 200:
                assert loop.time() < deadline, f"the browser is not heard (rms {loudest:.0f})"
                await asyncio.sleep(0.1)
                loudest = max(loudest, listener.rms(0.2))
        finally:
            await listener.close()

        # Every address the server's peer knows of the browser is loopback.
        engine = media_runtime(hall.server.ctx).engine
        peer = engine._peers[result["session_id"]]
        remote = peer.pc.getTransceivers()[0].receiver.transport.transport
        hosts = {c.host for c in remote._connection._remote_candidates}
        assert hosts == {"127.0.0.1"}, hosts
    finally:
        await context.close()
        await speaker.close()


async def loopback_offers(page: Any, meeting_id: int, hosts: set[str]) -> None:
    """Pass the delegate app's offers on with their 127.0.0.1 candidates only (the app
    offers every address it gathered; the test machine's other addresses stay unused)."""

    async def rewrite(route: Any) -> None:
        body = json.loads(route.request.post_data or "{}")
        lines = str(body.get("sdp", "")).split("\r\n")
        hosts.update(line.split()[4] for line in lines if line.startswith("a=candidate"))
        body["sdp"] = "\r\n".join(
            line for line in lines if not line.startswith("a=candidate") or " 127.0.0.1 " in line
        )
        await route.continue_(post_data=json.dumps(body))

    await page.route(f"**/api/v1/meetings/{meeting_id}/media", rewrite)


async def test_delegate_app_joins_remotely_and_hears_the_floor(hall: Hall, chromium: Any) -> None:
    speaker = Client(TONE_HZ)

    async def signal(sdp: str) -> str:
        answer = await hall.join(hall.delegates[0], sdp)
        assert answer.status_code == 201, answer.text
        return str(answer.json()["sdp"])

    pages: list[Any] = []
    try:
        await speaker.join(signal)
        await hall.give_floor(hall.delegates[0])
        _, page = await signed_in(hall.server, chromium, "delegate002", viewport=TABLET)
        pages.append(page)
        offered: set[str] = set()
        await loopback_offers(page, hall.meeting_id, offered)
        await page.goto(f"{hall.server.url}/app/delegate/#meeting/{hall.meeting_id}")
        await wait_online(page)
        await page.wait_for_selector("#remote[data-state=idle] #remote-join:not([disabled])")
        async with hall.server.socket(hall.chair) as ws:
            await ws.subscribe({hall.topic: 0})
            await page.click("#remote-join")
            await page.wait_for_selector("#remote[data-state=listening]")
            joined = await ws.next_event("media.joined")
            while joined["data"]["user_id"] != hall.delegate_ids[1]:
                joined = await ws.next_event("media.joined")
            session_id = joined["data"]["session_id"]
            assert offered, "the app sent its offer before gathering any candidate"

            # Listening: the state says so and names who holds the floor.
            assert "đang nghe" in (await page.inner_text("#remote-status")).lower()
            speaker_name = (await page.inner_text("#current-speaker")).split(":")[-1].strip()
            assert speaker_name and speaker_name in await page.inner_text("#remote-floor")
            # The floor's tone arrives: packets keep coming, and they are not silence.
            await page.wait_for_function(
                "() => Number(document.querySelector('#remote-level').dataset.packets) > 50"
                " && Number(document.querySelector('#remote-level').dataset.level) > 0.01"
            )
            packets = int(await page.get_attribute("#remote-level", "data-packets") or 0)
            await page.wait_for_function(
                "(n) => Number(document.querySelector('#remote-level').dataset.packets) > n",
                arg=packets + 25,
            )
            audio = await page.evaluate(
                "() => { const a = document.getElementById('floor-audio');"
                " return {paused: a.paused, tracks: a.srcObject?.getAudioTracks().length}; }"
            )
            assert audio == {"paused": False, "tracks": 1}, audio
            await shot(page, "delegate-remote-listening-tablet")

            # Mute with a click, unmute with the keyboard.
            await page.click("#remote-mute")
            await page.wait_for_selector("#remote-mute[aria-pressed=true]")
            await page.focus("#remote-mute")
            await page.keyboard.press("Enter")
            await page.wait_for_selector("#remote-mute[aria-pressed=false]")

            # Leave: the session ends on the server, the join button has the focus again.
            await page.click("#remote-leave")
            left = await ws.next_event("media.left")
            while left["data"]["session_id"] != session_id:
                left = await ws.next_event("media.left")
            assert left["data"]["reason"] == "left"
            await page.wait_for_selector("#remote[data-state=idle] #remote-join:focus")
            assert (
                await page.evaluate("() => document.getElementById('floor-audio').srcObject")
                is None
            )

        # The panel fits tablet portrait and phone screens (no sideways scrolling).
        for viewport in (TABLET_PORTRAIT, PHONE):
            await page.set_viewport_size(viewport)
            await page.locator("#remote-join").scroll_into_view_if_needed()
            box = await page.locator("#remote").bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], box
            assert (
                await page.evaluate("() => document.documentElement.scrollWidth")
                <= viewport["width"]
            )

        # Someone who takes no part in the meeting is told so, and nothing is stored.
        before = await hall.stored()
        _, outsider = await signed_in(hall.server, chromium, "delegate009", viewport=PHONE)
        pages.append(outsider)
        await loopback_offers(outsider, hall.meeting_id, set())
        await outsider.goto(f"{hall.server.url}/app/delegate/#meeting/{hall.meeting_id}")
        await wait_online(outsider)
        await outsider.click("#remote-join")
        await outsider.wait_for_selector("#remote[data-state=error] #remote-error:visible")
        assert "không phải thành viên" in await outsider.inner_text("#remote-error")
        await shot(outsider, "delegate-remote-refused-phone")
        assert await hall.stored() == before

        # A tablet whose microphone permission is refused says so, and joins nothing.
        context, denied = await signed_in(
            hall.server, chromium, "delegate003", viewport=TABLET_PORTRAIT
        )
        pages.append(denied)
        await context.add_init_script(
            "navigator.mediaDevices.getUserMedia = () => Promise.reject("
            "new DOMException('denied', 'NotAllowedError'));"
        )
        await denied.goto(f"{hall.server.url}/app/delegate/#meeting/{hall.meeting_id}")
        await wait_online(denied)
        await denied.click("#remote-join")
        await denied.wait_for_selector("#remote[data-state=error] #remote-error:visible")
        assert "cho phép micrô" in await denied.inner_text("#remote-error")
        assert await denied.is_visible("#remote-join")
        assert await hall.stored() == before
        engine = media_runtime(hall.server.ctx).engine
        assert [p.user_id for p in await engine.peers(hall.meeting_id)] == [hall.delegate_ids[0]]
        assert [e for p in pages for e in p.js_errors] == []
    finally:
        for opened in pages:
            await opened.context.close()
        await speaker.close()
