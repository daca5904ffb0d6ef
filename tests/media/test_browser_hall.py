"""The hall's sound desk page and the floor's video, in real Chromiums with fake devices.

Each browser is its own Chromium whose fake microphone plays a tone of its own (a WAV file
written by the test), so what every page plays can be told apart by frequency: WebAudio's
analyser on the page's floor <audio> gives the level at each tone. The desk page (chair)
connects the hall; a remote delegate, with no other page joined, hears the hall's tone;
nobody hears their own. The projector page plays the speaker's camera.
"""

from __future__ import annotations

import asyncio
import contextlib
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from meeting.media.service import runtime as media_runtime
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, TABLET, shot, signed_in, wait_online
from tests.harness import IN_CI
from tests.media.conftest import Hall
from tests.media.peers import Client
from tests.media.test_browser import loopback_offers

HALL_HZ = 500.0
DELEGATE_HZ = 1300.0
RED = (220, 30, 30)

# What a page plays, analysed in the page: the level (dB) at each asked frequency and the
# loudest frequency, from an AnalyserNode on the given media element's stream.
LISTEN_JS = """([selector, freqs]) => {
  const el = document.querySelector(selector);
  const stream = el && el.srcObject;
  if (!stream || !stream.getAudioTracks().length) return null;
  if (!window.__ears || window.__ears.stream !== stream) {
    const ctx = new AudioContext();
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 8192;
    analyser.smoothingTimeConstant = 0.5;
    ctx.createMediaStreamSource(stream).connect(analyser);
    window.__ears = {stream, ctx, analyser};
  }
  const {ctx, analyser} = window.__ears;
  const bins = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(bins);
  const hz = ctx.sampleRate / analyser.fftSize;
  const at = (f) => {
    let best = -1000;
    for (let i = Math.floor(f / hz) - 2; i <= Math.ceil(f / hz) + 2; i++)
      best = Math.max(best, bins[i]);
    return best;
  };
  let peak = 1;
  for (let i = 2; i < bins.length; i++) if (bins[i] > bins[peak]) peak = i;
  return {peak: peak * hz, peakDb: bins[peak], levels: freqs.map(at)};
}"""


def write_tone(path: Path, frequency: float, seconds: float = 4.0) -> Path:
    rate = 48_000
    t = np.arange(int(rate * seconds)) / rate
    samples = (np.sin(2 * np.pi * frequency * t) * 12_000).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


@contextlib.asynccontextmanager
async def chromium_with_tone(playwright: Any, wav: Path) -> AsyncIterator[Any]:
    launched = await playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[
            *CHROMIUM_ARGS,
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}",
            "--allow-loopback-in-peer-connection",
            "--autoplay-policy=no-user-gesture-required",
        ],
    )
    try:
        yield launched
    finally:
        await launched.close()


@pytest.fixture
async def playwright() -> AsyncIterator[Any]:
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is missing: the browser tests must run in CI")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as running:
        yield running


async def hears(
    page: Any, selector: str, loud: float, quiet: tuple[float, ...] = (), timeout: float = 20.0
) -> dict[str, Any]:
    """Until ``loud`` is the loudest frequency the page plays and each of ``quiet`` is at
    least 30 dB below it (or below -90 dB)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    heard: dict[str, Any] | None = None
    while True:
        heard = await page.evaluate(LISTEN_JS, [selector, [loud, *quiet]])
        if heard and abs(heard["peak"] - loud) < 20 and heard["peakDb"] > -70:
            level, *others = heard["levels"]
            if all(o < level - 30 or o < -90 for o in others):
                return heard
        if loop.time() > deadline:
            raise AssertionError(f"{selector} does not play {loud} Hz alone: {heard}")
        await asyncio.sleep(0.2)


async def silent(page: Any, selector: str, tones: tuple[float, ...], seconds: float = 2.0) -> None:
    """For ``seconds``, none of ``tones`` is in what the page plays (below -80 dB)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        heard = await page.evaluate(LISTEN_JS, [selector, list(tones)])
        if heard is not None:
            assert all(level < -80 for level in heard["levels"]), heard
        await asyncio.sleep(0.2)


async def test_the_desk_sends_the_hall_and_nobody_hears_themself(
    hall: Hall, playwright: Any, tmp_path: Path
) -> None:
    hall_wav = write_tone(tmp_path / "hall.wav", HALL_HZ)
    delegate_wav = write_tone(tmp_path / "delegate.wav", DELEGATE_HZ)
    async with (
        chromium_with_tone(playwright, hall_wav) as desk_browser,
        chromium_with_tone(playwright, delegate_wav) as delegate_browser,
    ):
        _, desk = await signed_in(hall.server, desk_browser, "chair", viewport=TABLET)
        await loopback_offers(desk, hall.meeting_id, set())
        await desk.goto(f"{hall.server.url}/app/desk/#meeting/{hall.meeting_id}")
        await desk.wait_for_selector("#desk[data-state=idle] #desk-connect:not([disabled])")
        assert "chưa kết nối" in (await desk.inner_text("#desk-status")).lower()
        async with hall.server.socket(hall.chair) as ws:
            await ws.subscribe({hall.topic: 0})
            await desk.click("#desk-connect")
            await desk.wait_for_selector("#desk[data-state=listening]")
            joined = await ws.next_event("media.joined")
            assert joined["data"]["kind"] == "hall"
        assert "đang được gửi" in (await desk.inner_text("#desk-status")).lower()
        # The input meter moves with the hall's tone; the devices have their names now.
        await desk.wait_for_function(
            "() => Number(document.querySelector('#desk-in-level').dataset.level) > 0.05"
        )
        assert await desk.locator("#desk-input option").count() >= 2

        # A remote delegate, with no other page joined, hears the hall.
        _, tablet = await signed_in(hall.server, delegate_browser, "delegate002", viewport=TABLET)
        await loopback_offers(tablet, hall.meeting_id, set())
        await tablet.goto(f"{hall.server.url}/app/delegate/#meeting/{hall.meeting_id}")
        await wait_online(tablet)
        await tablet.click("#remote-join")
        await tablet.wait_for_selector("#remote[data-state=listening]")
        await hears(tablet, "#floor-audio", HALL_HZ, (DELEGATE_HZ,))
        # The desk does not get the hall back (it would feed the loudspeakers into itself).
        await silent(desk, "#desk-audio", (HALL_HZ,))
        await shot(desk, "desk-connected")

        # Given the floor, the delegate is heard in the hall, and neither hears themself.
        await hall.give_floor(hall.delegates[1])
        await hears(desk, "#desk-audio", DELEGATE_HZ, (HALL_HZ,))
        await desk.wait_for_function(
            "() => Number(document.querySelector('#desk-out-level').dataset.level) > 0.02"
        )
        await hears(tablet, "#floor-audio", HALL_HZ, (DELEGATE_HZ,))
        await desk.wait_for_selector("#desk-floor:has-text('Đang phát biểu')")

        # Disconnected: the hall leaves the floor, the page says so.
        await desk.click("#desk-disconnect")
        await desk.wait_for_selector("#desk[data-state=idle] #desk-connect")
        engine = media_runtime(hall.server.ctx).engine
        assert [p.kind for p in await engine.peers(hall.meeting_id)] == ["participant"]
        assert desk.js_errors == [] and tablet.js_errors == []


async def test_the_desk_is_for_the_officers(hall: Hall, playwright: Any, tmp_path: Path) -> None:
    async with chromium_with_tone(playwright, write_tone(tmp_path / "t.wav", HALL_HZ)) as b:
        _, page = await signed_in(hall.server, b, "delegate001", viewport=TABLET)
        await page.goto(f"{hall.server.url}/app/desk/#meeting/{hall.meeting_id}")
        await page.wait_for_selector("#desk-refused")
        assert "chủ tọa" in (await page.inner_text("#desk-refused")).lower()
        # The chair panel links to the desk.
        _, chair = await signed_in(hall.server, b, "chair", viewport=TABLET)
        await chair.goto(f"{hall.server.url}/app/chair/#meeting/{hall.meeting_id}")
        href = await chair.get_attribute("#desk-link", "href")
        assert href == f"/app/desk/#meeting/{hall.meeting_id}"
        assert page.js_errors == [] and chair.js_errors == []


async def test_the_projector_plays_the_speakers_video(
    hall: Hall, playwright: Any, tmp_path: Path
) -> None:
    speaker = Client(DELEGATE_HZ, color=RED)

    async def signal(sdp: str) -> str:
        answer = await hall.join(hall.delegates[0], sdp)
        assert answer.status_code == 201, answer.text
        return str(answer.json()["sdp"])

    async with chromium_with_tone(playwright, write_tone(tmp_path / "t.wav", HALL_HZ)) as b:
        try:
            await speaker.join(signal)
            _, projector = await signed_in(
                hall.server, b, "chair", viewport={"width": 1280, "height": 720}
            )
            await loopback_offers(projector, hall.meeting_id, set())
            await projector.goto(f"{hall.server.url}/app/projector/#meeting/{hall.meeting_id}")
            await projector.wait_for_selector("#proj-video[data-state=listening]", state="attached")
            # Nobody with a camera holds the floor: no video shown.
            assert await projector.is_hidden("#floor-video-box")
            await hall.give_floor(hall.delegates[0])
            await projector.wait_for_selector(
                "#floor-video-area[data-video=live]", state="attached"
            )
            assert await projector.is_visible("#floor-video")
            size = await projector.evaluate(
                "() => { const v = document.getElementById('floor-video');"
                " return [v.videoWidth, v.videoHeight]; }"
            )
            assert size[0] > 0 and size[1] > 0, size
            frames = int(await projector.get_attribute("#floor-video", "data-frames") or 0)
            await projector.wait_for_function(
                "(n) => Number(document.getElementById('floor-video').dataset.frames) > n",
                arg=frames + 10,
            )
            # The picture is the speaker's camera (red).
            color = await projector.evaluate("""() => {
                const v = document.getElementById('floor-video');
                const c = document.createElement('canvas');
                c.width = 16; c.height = 16;
                const g = c.getContext('2d');
                g.drawImage(v, 0, 0, 16, 16);
                const d = g.getImageData(8, 8, 1, 1).data;
                return [d[0], d[1], d[2]];
            }""")
            assert color[0] > 150 and color[2] < 100, color
            await shot(projector, "projector-speaker-video")
            # The projector is a viewer: never on the floor, not heard.
            engine = media_runtime(hall.server.ctx).engine
            kinds = sorted(p.kind for p in await engine.peers(hall.meeting_id))
            assert kinds == ["participant", "viewer"]
            assert projector.js_errors == []
        finally:
            await speaker.close()


async def test_tablets_show_the_speaker_and_their_own_camera(
    hall: Hall, playwright: Any, tmp_path: Path
) -> None:
    async with chromium_with_tone(playwright, write_tone(tmp_path / "t.wav", HALL_HZ)) as b:
        tablets = []
        for username in ("delegate001", "delegate002"):
            _, tablet = await signed_in(hall.server, b, username, viewport=TABLET)
            await loopback_offers(tablet, hall.meeting_id, set())
            await tablet.goto(f"{hall.server.url}/app/delegate/#meeting/{hall.meeting_id}")
            await wait_online(tablet)
            tablets.append(tablet)
        speaker, watcher = tablets
        # The speaker sends its (fake) camera: its own preview, sent but not yet shown.
        await speaker.check("#remote-video")
        await speaker.click("#remote-join")
        await speaker.wait_for_selector("#remote[data-state=listening]")
        await speaker.wait_for_selector("#own-video-state[data-camera=sending]")
        assert await speaker.evaluate("() => document.getElementById('own-video').videoWidth") > 0
        await watcher.click("#remote-join")
        await watcher.wait_for_selector("#remote[data-state=listening]")
        assert await watcher.is_hidden("#own-video-box")  # no camera, no preview

        await hall.give_floor(hall.delegates[0])
        await speaker.wait_for_selector("#own-video-state[data-camera=on_air]")
        assert "mọi người đang thấy bạn" in await speaker.inner_text("#own-video-state")
        await watcher.wait_for_selector("#floor-video-area[data-video=live]", state="attached")
        assert await watcher.is_visible("#floor-video")
        frames = int(await watcher.get_attribute("#floor-video", "data-frames") or 0)
        await watcher.wait_for_function(
            "(n) => Number(document.getElementById('floor-video').dataset.frames) > n",
            arg=frames + 10,
        )
        assert await watcher.evaluate("() => document.getElementById('floor-video').videoWidth") > 0
        # The speaker is not sent its own camera back: it has its preview.
        assert await speaker.get_attribute("#floor-video-area", "data-video") != "live"
        await shot(watcher, "delegate-remote-speaker-video")
        await shot(speaker, "delegate-remote-own-camera-live")
        assert speaker.js_errors == [] and watcher.js_errors == []
