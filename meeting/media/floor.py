"""The floor of a council hall: mix who holds it, encode once per mix, hand the packets out.

Every 20 ms the ``FloorMixer`` takes one frame from each source on the floor (the hall's
sound desk, the chairs and the delegate granted the floor), sums them, encodes the sum
ONCE with Opus and offers the same ``av.Packet`` to every listener's ``ListenerTrack``.
aiortc's ``RTCRtpSender`` recognises a packet (not a frame) coming out of its track and
only packetises it (``OpusEncoder.pack``): no per-listener encoding. What is left per
listener is RTP serialisation, SRTP and the UDP send, done by aiortc.

Mix-minus: nobody hears themself. A listener registered with its own source key hears the
floor minus that source; such a mix exists (with its own encoder) only for a source that
is on the floor AND listens, so the hall desk and a remote speaker get one each while
every other listener shares the full mix. Encodes per tick = 1 + contributing listeners,
never one per listener.

``naive`` mode (for the benchmark's baseline only) offers the mixed *frame* instead, so
every listener's sender encodes it again, as a plain aiortc relay would.

Sources that are not on the floor are never fed in: their frames are dropped by the
caller as they arrive. Every buffer here is bounded: a source keeps at most
``SOURCE_BUFFER_FRAMES``, a listener at most ``LISTENER_BUFFER_PACKETS`` (the oldest
goes first: late audio is worse than lost audio).
"""

from __future__ import annotations

import asyncio
import fractions
import logging
from collections import deque
from collections.abc import Callable, Collection, Hashable, Iterable
from typing import Literal

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame
from av.audio.resampler import AudioResampler

log = logging.getLogger("dienhong.media.floor")

SAMPLE_RATE = 48_000
CHANNELS = 2
# 20 ms frames: the packet time WebRTC clients use for Opus.
FRAME_SAMPLES = 960
FRAME_SECS = FRAME_SAMPLES / SAMPLE_RATE
TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
# 60 ms of a source's audio may wait for the next tick; more means its clock runs fast.
SOURCE_BUFFER_FRAMES = 3
# 100 ms per listener; a listener whose sender falls behind loses the oldest packets.
LISTENER_BUFFER_PACKETS = 5
# Ticks this late (a stalled loop) are skipped rather than bursted out.
MAX_TICK_LAG_SECS = 0.2
OPUS_BITRATE = 48_000

Mode = Literal["encode_once", "naive"]

VIDEO_CLOCK = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)
VIDEO_BITRATE = 600_000
# A keyframe at least this often even if nobody asks (a lost one is also asked for, PLI).
VIDEO_KEYFRAME_INTERVAL_FRAMES = 150
# One thread for the floor's VP8 encoder: libvpx's automatic threading (one per core) costs
# about 15x the CPU of a single thread at the floor's sizes (28 ms against 1.7 ms a 320x240
# frame, measured on the 2-core test machine under load) and blocks the executor longer.
VIDEO_ENCODER_THREADS = 1


class ListenerTrack(MediaStreamTrack):
    """What one listener's sender reads: the floor's packets (or frames, naive mode)."""

    def __init__(self, kind: str = "audio") -> None:
        super().__init__()
        self.kind = kind
        self._items: deque[av.Packet | AudioFrame] = deque(maxlen=LISTENER_BUFFER_PACKETS)
        self._waiter: asyncio.Future[None] | None = None
        self.dropped = 0

    def offer(self, item: av.Packet | AudioFrame) -> None:
        if len(self._items) == LISTENER_BUFFER_PACKETS:
            self.dropped += 1
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def recv(self) -> av.Packet | AudioFrame:  # type: ignore[override]
        while not self._items:
            if self.readyState != "live":
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self.readyState != "live":
            raise MediaStreamError
        return self._items.popleft()

    def stop(self) -> None:
        super().stop()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _Source:
    """One floor source's pending samples (s16, stereo, 48 kHz, interleaved)."""

    def __init__(self) -> None:
        self.pending = np.zeros(0, dtype=np.int16)
        self.resampler: AudioResampler | None = None

    def add(self, frame: AudioFrame) -> None:
        if (
            frame.format.name != "s16"
            or frame.layout.name != "stereo"
            or frame.sample_rate != SAMPLE_RATE
        ):
            if self.resampler is None:
                self.resampler = AudioResampler(format="s16", layout="stereo", rate=SAMPLE_RATE)
            chunks = [f.to_ndarray().reshape(-1) for f in self.resampler.resample(frame)]
            samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
        else:
            samples = frame.to_ndarray().reshape(-1)
        joined = np.concatenate((self.pending, samples))
        keep = SOURCE_BUFFER_FRAMES * FRAME_SAMPLES * CHANNELS
        self.pending = joined[-keep:] if joined.size > keep else joined

    def take(self) -> np.ndarray | None:
        need = FRAME_SAMPLES * CHANNELS
        if self.pending.size < need:
            return None
        chunk, self.pending = self.pending[:need], self.pending[need:]
        return chunk


def new_opus_encoder() -> av.AudioCodecContext:
    encoder = av.CodecContext.create("libopus", "w")
    assert isinstance(encoder, av.AudioCodecContext)
    encoder.bit_rate = OPUS_BITRATE
    encoder.format = "s16"
    encoder.layout = "stereo"
    encoder.sample_rate = SAMPLE_RATE
    encoder.time_base = TIME_BASE
    encoder.options = {"application": "voip"}
    encoder.open()
    return encoder


class FloorMixer:
    """Mixes the floor's sources every 20 ms and fans the result out to listeners."""

    def __init__(
        self, mode: Mode = "encode_once", on_packet: Callable[[av.Packet], None] | None = None
    ) -> None:
        self.mode: Mode = mode
        # The full floor's encoder (what the recording and every plain listener get).
        self.encoder = new_opus_encoder()
        # Each listener and the source key it must not hear (None: hears the whole floor).
        self._listeners: dict[ListenerTrack, Hashable | None] = {}
        self._sources: dict[Hashable, _Source] = {}
        # Encoders of the floor-minus-X mixes, for X on the floor that listens.
        self._minus: dict[Hashable, av.AudioCodecContext] = {}
        self._on_packet = on_packet
        self._pts = 0
        self.ticks = 0
        self.packets = 0
        # Encoder calls: one per distinct mix per tick.
        self.encodes = 0

    @property
    def extradata(self) -> bytes | None:
        return self.encoder.extradata

    # --- listeners ---------------------------------------------------------------
    @property
    def listeners(self) -> Collection[ListenerTrack]:
        return self._listeners.keys()

    def add_listener(self, track: ListenerTrack, own: Hashable | None = None) -> None:
        """``track`` hears the floor minus the source ``own`` (when that is on the floor)."""
        self._listeners[track] = own
        self._fit_minus()

    def remove_listener(self, track: ListenerTrack) -> None:
        self._listeners.pop(track, None)
        self._fit_minus()

    def mixes(self) -> frozenset[Hashable]:
        """The sources that have a floor-minus mix of their own right now."""
        return frozenset(self._minus)

    def _fit_minus(self) -> None:
        # A source's mix-minus needs its own encoder: Opus keeps state from frame to frame.
        wanted = {
            own for own in self._listeners.values() if own is not None and own in self._sources
        }
        for key in list(self._minus):
            if key not in wanted:
                del self._minus[key]
        for key in wanted:
            if key not in self._minus:
                self._minus[key] = new_opus_encoder()

    # --- sources -----------------------------------------------------------------
    def set_sources(self, keys: Iterable[Hashable]) -> None:
        """The floor is exactly ``keys`` from now on; others' buffers are dropped."""
        wanted = set(keys)
        for key in list(self._sources):
            if key not in wanted:
                del self._sources[key]
        for key in wanted:
            self._sources.setdefault(key, _Source())
        self._fit_minus()

    def on_floor(self, key: Hashable) -> bool:
        return key in self._sources

    def feed(self, key: Hashable, frame: AudioFrame) -> None:
        """A source's decoded frame: kept if the source holds the floor, else dropped."""
        source = self._sources.get(key)
        if source is not None:
            source.add(frame)

    # --- one tick ------------------------------------------------------------------
    def _frame(self, total: np.ndarray, pts: int) -> AudioFrame:
        mixed = np.clip(total, -32768, 32767).astype(np.int16).reshape(1, -1)
        frame = AudioFrame.from_ndarray(mixed, format="s16", layout="stereo")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = pts
        frame.time_base = TIME_BASE
        return frame

    def mix_minus(self) -> tuple[AudioFrame, dict[Hashable, AudioFrame]]:
        """One tick's full floor, and the floor minus each source that has its own mix."""
        total = np.zeros(FRAME_SAMPLES * CHANNELS, dtype=np.int32)
        chunks: dict[Hashable, np.ndarray] = {}
        for key, source in self._sources.items():
            chunk = source.take()
            if chunk is not None:
                total += chunk
                chunks[key] = chunk
        pts = self._pts
        self._pts += FRAME_SAMPLES
        minus = {}
        for key in self._minus:
            own = chunks.get(key)
            minus[key] = self._frame(total - own if own is not None else total, pts)
        return self._frame(total, pts), minus

    def mix(self) -> AudioFrame:
        return self.mix_minus()[0]

    def _encode(self, encoder: av.AudioCodecContext, frame: AudioFrame) -> list[av.Packet]:
        self.encodes += 1
        return list(encoder.encode(frame))

    def tick(self) -> None:
        self.ticks += 1
        full, minus = self.mix_minus()
        if self.mode == "naive":
            for listener, own in self._listeners.items():
                listener.offer(minus.get(own, full) if own is not None else full)
            if self._on_packet is None:
                return
        packets = self._encode(self.encoder, full)
        for packet in packets:
            self.packets += 1
            if self._on_packet is not None:
                self._on_packet(packet)
        if self.mode != "encode_once":
            return
        own_packets = {key: self._encode(self._minus[key], frame) for key, frame in minus.items()}
        for listener, own in self._listeners.items():
            for packet in own_packets.get(own, packets) if own is not None else packets:
                listener.offer(packet)

    async def run(self) -> None:
        """Tick every 20 ms on the running loop's clock until cancelled."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            try:
                self.tick()
            except av.FFmpegError:
                log.exception("encoding the floor failed; skipping one frame")
            next_at += FRAME_SECS
            delay = next_at - loop.time()
            if delay < -MAX_TICK_LAG_SECS:
                next_at = loop.time()
                delay = 0
            await asyncio.sleep(max(delay, 0))


class VideoFloor:
    """The floor's video: the holder's decoded frames, encoded ONCE (VP8), to every listener.

    Encoding runs in the default executor, one frame at a time: a frame that arrives while
    the previous one is still being encoded is dropped (the next one follows in 33 ms),
    so the media loop never waits for the encoder. A new listener, a listener's picture
    loss indication (PLI) or a new holder makes the next frame a keyframe. The holder's
    own tablet is sent nothing: it shows its local preview.
    """

    def __init__(self) -> None:
        # Each viewer and the source key whose camera it is (None: not a camera).
        self._listeners: dict[ListenerTrack, Hashable | None] = {}
        self.source: Hashable | None = None
        self._encoder: av.VideoCodecContext | None = None
        self._busy = False
        self._keyframe = True
        self._since_keyframe = 0
        self.frames = 0
        self.keyframes = 0

    @property
    def listeners(self) -> Collection[ListenerTrack]:
        return self._listeners.keys()

    def add_listener(self, track: ListenerTrack, own: Hashable | None = None) -> None:
        self._listeners[track] = own
        self._keyframe = True

    def remove_listener(self, track: ListenerTrack) -> None:
        self._listeners.pop(track, None)

    def set_source(self, key: Hashable | None) -> None:
        if key != self.source:
            self.source = key
            self._keyframe = True

    def request_keyframe(self) -> None:
        self._keyframe = True

    def feed(self, key: Hashable, frame: VideoFrame) -> None:
        """A source's decoded frame: encoded if it holds the floor and the encoder is free."""
        if (
            key != self.source
            or self._busy
            or not any(own != key for own in self._listeners.values())
        ):
            return
        self._busy = True
        loop = asyncio.get_running_loop()
        keyframe = self._keyframe or self._since_keyframe >= VIDEO_KEYFRAME_INTERVAL_FRAMES
        self._keyframe = False
        frame.pts = int(loop.time() * VIDEO_CLOCK)
        frame.time_base = VIDEO_TIME_BASE
        future = loop.run_in_executor(None, self._encode, frame, keyframe)
        future.add_done_callback(self._encoded)

    def _encode(self, frame: VideoFrame, keyframe: bool) -> list[av.Packet]:
        if frame.format.name != "yuv420p":
            frame = frame.reformat(format="yuv420p")
        encoder = self._encoder
        if encoder is None or (encoder.width, encoder.height) != (frame.width, frame.height):
            encoder = av.CodecContext.create("libvpx", "w")
            assert isinstance(encoder, av.VideoCodecContext)
            encoder.width, encoder.height = frame.width, frame.height
            encoder.pix_fmt = "yuv420p"
            encoder.thread_count = VIDEO_ENCODER_THREADS
            encoder.bit_rate = VIDEO_BITRATE
            encoder.time_base = VIDEO_TIME_BASE
            encoder.options = {
                "deadline": "realtime",
                "cpu-used": "8",
                "lag-in-frames": "0",
                "static-thresh": "1",
                "partitions": "0",
            }
            self._encoder = encoder
            keyframe = True
        if keyframe:
            frame.pict_type = av.video.frame.PictureType.I
        packets = list(encoder.encode(frame))
        for packet in packets:
            packet.time_base = VIDEO_TIME_BASE
        return packets

    def _encoded(self, future: asyncio.Future[list[av.Packet]]) -> None:
        self._busy = False
        if future.cancelled():
            return
        try:
            packets = future.result()
        except av.FFmpegError:
            log.exception("encoding the floor's video failed; asking for a keyframe")
            self._keyframe = True
            return
        for packet in packets:
            self.frames += 1
            if packet.is_keyframe:
                self.keyframes += 1
                self._since_keyframe = 0
            else:
                self._since_keyframe += 1
            for listener, own in self._listeners.items():
                if own is None or own != self.source:
                    listener.offer(packet)
