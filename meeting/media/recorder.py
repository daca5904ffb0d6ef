"""Recording the floor: the same Opus packets the listeners get, muxed into Ogg.

Muxing and the file writes happen in the recorder's own thread; the media loop only puts
packet bytes into a bounded queue. If the disk stalls long enough to fill it, packets are
dropped and counted (the recording gets a gap) rather than the floor stalling.
"""

from __future__ import annotations

import contextlib
import fractions
import logging
import queue
import threading
from dataclasses import dataclass
from pathlib import Path

import av

from meeting.media.floor import SAMPLE_RATE

log = logging.getLogger("dienhong.media.recorder")

# Packets waiting for the writer thread: 10 s of 20 ms packets.
RECORDER_QUEUE_PACKETS = 500


@dataclass(frozen=True)
class RecordingSummary:
    path: Path
    packets: int
    dropped: int
    duration_secs: float
    size_bytes: int


class Recorder:
    """Writes Opus packets to ``path`` (Ogg) from a worker thread."""

    def __init__(
        self, path: Path, extradata: bytes | None, queue_packets: int = RECORDER_QUEUE_PACKETS
    ) -> None:
        self.path = path
        self._extradata = extradata
        self._queue: queue.Queue[tuple[bytes, int] | None] = queue.Queue(maxsize=queue_packets)
        self.packets = 0
        self.dropped = 0
        self._first_pts: int | None = None
        self._last_pts = 0
        self._error: BaseException | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(
            target=self._write_all, name=f"recorder-{path.name}", daemon=True
        )
        self._thread.start()

    def offer(self, packet: av.Packet) -> None:
        """Called on the media loop for every floor packet; never blocks."""
        pts = int(packet.pts or 0)
        try:
            self._queue.put_nowait((bytes(packet), pts))
        except queue.Full:
            self.dropped += 1

    def _write_all(self) -> None:
        try:
            container = av.open(str(self.path), "w", format="ogg")
        except (OSError, av.FFmpegError) as exc:
            self._error = exc
            log.error("cannot open recording %s: %s", self.path, exc)
            self._drain()
            return
        try:
            stream = container.add_stream("libopus", rate=SAMPLE_RATE)
            stream.layout = "stereo"
            stream.time_base = fractions.Fraction(1, SAMPLE_RATE)
            if self._extradata:
                stream.codec_context.extradata = self._extradata
            while True:
                item = self._queue.get()
                if item is None:
                    break
                data, pts = item
                if self._first_pts is None:
                    self._first_pts = pts
                packet = av.Packet(data)
                packet.pts = packet.dts = pts - self._first_pts
                packet.time_base = stream.time_base
                packet.stream = stream
                container.mux(packet)
                self.packets += 1
                self._last_pts = pts
        except (OSError, av.FFmpegError) as exc:
            self._error = exc
            log.error("recording %s failed: %s", self.path, exc)
            self._drain()
        finally:
            with contextlib.suppress(OSError, av.FFmpegError):
                container.close()

    def _drain(self) -> None:
        while self._queue.get() is not None:
            pass

    def close(self) -> RecordingSummary:
        """Finish the file (blocking: call from a thread, not from an event loop)."""
        self._queue.put(None)
        self._thread.join()
        first = self._first_pts if self._first_pts is not None else 0
        duration = (self._last_pts - first) / SAMPLE_RATE + (0.02 if self.packets else 0.0)
        size = self.path.stat().st_size if self.path.exists() else 0
        return RecordingSummary(self.path, self.packets, self.dropped, round(duration, 3), size)
