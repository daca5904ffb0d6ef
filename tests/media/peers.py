"""Test peers: aiortc clients on loopback that send a tone and analyse what they hear."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
from collections import deque
from collections.abc import Awaitable, Callable

import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack, VideoStreamTrack
from av import AudioFrame, VideoFrame

from server.compat.aioice_addresses import announce_addresses

RATE = 48_000
SAMPLES = 960
# What a listener keeps of what it heard: the last 2 s.
HEARD_FRAMES = 100


def loopback_only() -> None:
    """Test clients in this loop gather host candidates on 127.0.0.1 and nothing else."""
    announce_addresses(asyncio.get_running_loop(), ("127.0.0.1",), ("127.0.0.0/8",))


class ToneTrack(MediaStreamTrack):
    """A sine of ``frequency`` Hz (or silence for 0), paced in real time, 20 ms frames."""

    kind = "audio"

    def __init__(self, frequency: float, amplitude: int = 6000) -> None:
        super().__init__()
        self.frequency = frequency
        self.amplitude = amplitude
        self._pts = 0
        self._start: float | None = None
        self.muted = False

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        else:
            wait = self._start + self._pts / RATE - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
        t = (np.arange(SAMPLES) + self._pts) / RATE
        mono = (np.sin(2 * np.pi * self.frequency * t) * self.amplitude).astype(np.int16)
        if self.muted or self.frequency == 0:
            mono[:] = 0
        frame = AudioFrame.from_ndarray(mono.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, RATE)
        self._pts += SAMPLES
        return frame


class ColorTrack(VideoStreamTrack):
    """A camera that films a plain colour (RGB), 320x240 at aiortc's 30 fps pacing."""

    def __init__(self, rgb: tuple[int, int, int]) -> None:
        super().__init__()
        self.image = np.zeros((240, 320, 3), dtype=np.uint8)
        self.image[:, :] = rgb

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame.from_ndarray(self.image, format="rgb24")
        frame.pts = pts
        frame.time_base = time_base
        return frame


Signal = Callable[[str], Awaitable[str]]


class Client:
    """A remote participant: sends its tone, keeps the last 2 s of what it hears."""

    def __init__(
        self,
        frequency: float | None,
        color: tuple[int, int, int] | None = None,
        watch: bool = False,
    ) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.tone = ToneTrack(frequency) if frequency is not None else None
        self.camera = ColorTrack(color) if color is not None else None
        # Receive video too (a camera-less tablet that still wants to see the speaker).
        self.watch = watch
        self.seen_color: tuple[int, int, int] | None = None
        self.video_frames = 0
        self.heard: deque[np.ndarray] = deque(maxlen=HEARD_FRAMES)
        self.frames = 0
        self._tasks: list[asyncio.Task[None]] = []

    async def join(self, signal: Signal) -> str:
        """Offer (with ICE gathered), let ``signal`` exchange it; returns the answer."""
        if self.tone is not None:
            self.pc.addTrack(self.tone)
        else:
            self.pc.addTransceiver("audio", direction="recvonly")
        if self.camera is not None:
            self.pc.addTrack(self.camera)
        elif self.watch:
            self.pc.addTransceiver("video", direction="recvonly")

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self._tasks.append(asyncio.create_task(self._listen(track)))
            else:
                self._tasks.append(asyncio.create_task(self._watch(track)))

        await self.pc.setLocalDescription(await self.pc.createOffer())
        answer = await signal(self.pc.localDescription.sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        return answer

    async def _listen(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                assert isinstance(frame, AudioFrame)
                samples = frame.to_ndarray().reshape(-1).astype(np.float64)
                if frame.layout.name == "stereo":
                    samples = samples.reshape(-1, 2).mean(axis=1)
                self.heard.append(samples)
                self.frames += 1

    async def _watch(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                assert isinstance(frame, VideoFrame)
                image = frame.to_ndarray(format="rgb24")
                mean = image.reshape(-1, 3).mean(axis=0)
                self.seen_color = (int(mean[0]), int(mean[1]), int(mean[2]))
                self.video_frames += 1

    async def wait_seeing(self, rgb: tuple[int, int, int], timeout: float = 10.0) -> None:
        """Until the last received video frame has (about) the colour ``rgb``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            seen = self.seen_color
            if seen is not None and all(abs(a - b) < 40 for a, b in zip(seen, rgb, strict=True)):
                return
            if loop.time() > deadline:
                raise AssertionError(
                    f"not seeing {rgb}: last frame {seen}, {self.video_frames} frames"
                )
            await asyncio.sleep(0.05)

    async def wait_frames(self, count: int, timeout: float = 10.0) -> None:
        """Until this client has received ``count`` audio frames (it is connected)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.frames < count:
            assert loop.time() < deadline, f"only {self.frames} frames received"
            await asyncio.sleep(0.02)

    def clear(self) -> None:
        self.heard.clear()

    def spectrum(self, seconds: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
        frames = list(self.heard)[-int(seconds * 50) :]
        if not frames:
            return np.zeros(1), np.zeros(1)
        samples = np.concatenate(frames)
        power = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
        freqs = np.fft.rfftfreq(samples.size, 1 / RATE)
        return freqs, power

    def level_at(self, frequency: float, seconds: float = 0.5) -> float:
        """Spectral magnitude near ``frequency`` relative to the whole spectrum's peak."""
        freqs, power = self.spectrum(seconds)
        if power.max() <= 0:
            return 0.0
        band = (freqs > frequency - 15) & (freqs < frequency + 15)
        return float(power[band].max() / power.max()) if band.any() else 0.0

    def rms(self, seconds: float = 0.5) -> float:
        frames = list(self.heard)[-int(seconds * 50) :]
        if not frames:
            return 0.0
        return float(np.sqrt(np.mean(np.concatenate(frames) ** 2)))

    async def wait_hearing(
        self, frequency: float, timeout: float = 10.0, absent: tuple[float, ...] = ()
    ) -> None:
        """Until ``frequency`` dominates what was heard in the last 0.5 s (and none of
        ``absent`` is there)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if (
                self.rms() > 100
                and self.level_at(frequency) > 0.9
                and all(self.level_at(f) < 0.05 for f in absent)
            ):
                return
            if loop.time() > deadline:
                freqs, power = self.spectrum()
                peak = float(freqs[int(power.argmax())])
                raise AssertionError(
                    f"not hearing {frequency} Hz (peak {peak:.0f} Hz, "
                    f"rms {self.rms():.0f}, frames {self.frames})"
                )
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.tone is not None:
            self.tone.stop()
        if self.camera is not None:
            self.camera.stop()
        await self.pc.close()
