"""Remote listeners on one floor: server CPU per listener and per video viewer.

    python bench/media.py [--levels 25,50,100] [--hall-levels 25,50,100]
                          [--video-levels 10,25,50] [--naive-levels 10,20] [--window 5]

Four cases, in the same run, each against a fresh media server process (the real
``MediaEngine``: aiortc in its worker thread, the floor mixer, the recorder off):

* ``audio``: one remote speaker sends a tone and holds the floor; listeners hear it. The
  speaker hears the floor minus itself: two mixes, each encoded once per tick.
* ``hybrid``: the hall's sound desk (a ``hall`` peer with its own tone) and the remote
  speaker are both on the floor: three mixes (the floor, minus the hall, minus the
  speaker), still encoded once each, whatever the number of listeners.
* ``video``: the speaker also sends a camera (a moving picture, ``--camera`` size, 30 fps);
  viewers receive the floor's audio and video. The camera is decoded and encoded ONCE
  (VP8) for every viewer; what each viewer costs is packetising, SRTP and sending. One
  viewer joins before the idle figure, so the one encode is in the floor's own cost.
* ``naive``: the audio case with every listener's sender encoding the floor again (what a
  plain aiortc relay does), the baseline the encode-once design is compared to.

In each case the listener processes (``--per-process`` peers each) join in steps. At every
step the server process's CPU time (all its threads, from /proc) is measured over
``--window`` seconds together with the frame rate each listener receives. CPU per listener
is the slope over the idle floor; "one core sustains" is the number of listeners whose CPU
fits in one core next to that idle floor. At the largest step a profile of the worker
thread shows where the per-listener time goes.

All traffic is on 127.0.0.1. The machine may be shared: figures are CPU time, not wall time,
so other load skews them little, but frame rates suffer if the clients starve.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from meeting.media.engine import EngineConfig, Floor, MediaEngine
from server.compat.aioice_addresses import announce_addresses

MEETING = 1
SPEAKER_USER = 1
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Frames per second a listener must get to count as "full audio frame rate" (of 50).
FULL_RATE_FPS = 48.0
FULL_FPS = 50.0


HALL_USER = 2
CAMERA_FPS = 30


# --- the server process -------------------------------------------------------------------
async def serve(mode: str) -> None:
    engine = MediaEngine(
        EngineConfig(
            addresses=("127.0.0.1",),
            peer_networks=("127.0.0.0/8",),
            max_participants=10_000,
            silence_timeout_secs=3600,
            recordings_dir=None,
            mode=mode,
        ),  # type: ignore[arg-type]
        notify=lambda notice: None,
    )
    engine.start()
    # Wall time in the worker thread; the loop's idle wait in epoll is left out below.
    # (In naive mode the per-listener encoding runs in executor threads, outside this
    # profile: only its hand-off shows here, its cost is in the process's CPU figures.)
    profiler = cProfile.Profile(time.perf_counter)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            request = json.loads(line)
            op = request["op"]
            answer: dict[str, Any] = {}
            if op == "join":
                joined = await engine.join(
                    MEETING,
                    request["user"],
                    request["sdp"],
                    Floor(frozenset({SPEAKER_USER}), SPEAKER_USER),
                    request.get("kind", "participant"),
                )
                answer = {"sdp": joined.answer_sdp}
            elif op == "profile":
                # cProfile follows the thread it is enabled in: the media worker's.
                assert engine._loop is not None
                engine._loop.call_soon_threadsafe(profiler.enable)
                await asyncio.sleep(request["secs"])
                engine._loop.call_soon_threadsafe(profiler.disable)
                await asyncio.sleep(0.1)
                answer = {"profile": profile_summary(profiler)}
            elif op == "stats":
                answer = await engine.room_stats(MEETING)
            writer.write((json.dumps(answer) + "\n").encode())
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, limit=1 << 20)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


# (category, test on "file:function") in order; the first that matches takes the time.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    (
        "floor: mix and Opus encode (once per frame)",
        ("floor.py:mix", "floor.py:tick", "CodecContext' objects>", "from_ndarray", "resampl"),
    ),
    ("SRTP protect", ("srtp", "__init__.py:__process")),
    ("audio level of a frame (naive: per listener)", ("compute_audio_level",)),
    (
        "RTP packetise (header, extensions, NTP stamp, Opus pack)",
        ("rtp.py:", "clock.py:", "opus.py:", "mediastreams.py:"),
    ),
    ("sender loop (aiortc RTCRtpSender)", ("rtcrtpsender.py:",)),
    ("hand-off to the listener's track", ("floor.py:",)),
    (
        "UDP send (DTLS/ICE layers, sendto)",
        (
            "sendto",
            "selector_events.py:",
            "rtcdtlstransport.py:",
            "rtcicetransport.py:",
            "ice.py:",
            "stun.py:",
            "transport.py:",
        ),
    ),
    (
        "executor hand-off (naive: encode per listener in threads)",
        ("thread.py:", "threading.py:", "_chain_future", "SimpleQueue"),
    ),
    (
        "asyncio scheduling",
        (
            "base_events.py:",
            "events.py:",
            "futures.py:",
            "tasks.py:",
            "selectors.py:",
            "epoll",
            "queues.py:",
            "_asyncio",
            "isfuture",
            "Context' objects>",
        ),
    ),
]


def profile_summary(profiler: cProfile.Profile) -> dict[str, Any]:
    stats = pstats.Stats(profiler)
    total = 0.0
    by_category: dict[str, float] = {name: 0.0 for name, _ in CATEGORIES}
    by_category["other"] = 0.0
    rows: list[tuple[float, str]] = []
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{Path(filename).name}:{name}"
        if "epoll" in where:
            continue  # idle: the loop waiting for the next packet or tick
        total += tottime
        rows.append((tottime, where))
        for category, keys in CATEGORIES:
            if any(key in where for key in keys):
                by_category[category] += tottime
                break
        else:
            by_category["other"] += tottime
    rows.sort(reverse=True)
    buffer = io.StringIO()
    for tottime, where in rows[:15]:
        buffer.write(f"    {100 * tottime / total:5.1f}%  {where}\n")
    return {
        "total": total,
        "categories": {k: v / total for k, v in by_category.items()},
        "top": buffer.getvalue(),
    }


# --- client processes ---------------------------------------------------------------------
async def signal(port: int, request: dict[str, Any]) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    writer.write((json.dumps(request) + "\n").encode())
    await writer.drain()
    answer = json.loads(await reader.readline())
    writer.close()
    await writer.wait_closed()
    return answer  # type: ignore[no-any-return]


class CountingDecoder:
    """Stands in for the Opus decoder in listener processes: a listener only counts the
    frames it gets, and the machine's cores are left to the server being measured."""

    def decode(self, encoded_frame: Any) -> list[int]:
        return [len(encoded_frame.data)]


async def listen(port: int, count: int, first_user: int, watch: bool) -> None:
    """``count`` listen-only peers (``watch``: audio and video, counting video frames);
    prints their frame counters every second."""
    import aiortc.rtcrtpreceiver

    aiortc.rtcrtpreceiver.get_decoder = lambda codec: CountingDecoder()  # type: ignore[assignment,return-value]
    announce_addresses(asyncio.get_running_loop(), ("127.0.0.1",), ("127.0.0.0/8",))
    counters = [0] * count
    peers = []

    async def consume(index: int, track: MediaStreamTrack) -> None:
        counted = track.kind == ("video" if watch else "audio")
        try:
            while True:
                await track.recv()
                if counted:
                    counters[index] += 1
        except MediaStreamError:
            return

    for index in range(count):
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("audio", direction="recvonly")
        if watch:
            pc.addTransceiver("video", direction="recvonly")
        pc.on("track", lambda track, i=index: asyncio.ensure_future(consume(i, track)))
        await pc.setLocalDescription(await pc.createOffer())
        answer = await signal(
            port, {"op": "join", "user": first_user + index, "sdp": pc.localDescription.sdp}
        )
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        peers.append(pc)
    loop = asyncio.get_running_loop()
    while True:
        # CLOCK_MONOTONIC is system-wide: the driver compares these stamps across processes.
        print(json.dumps({"t": time.monotonic(), "c": counters}), flush=True)
        await asyncio.sleep(1 - (loop.time() % 1))


class MovingPicture(MediaStreamTrack):
    """A camera whose picture changes every frame (a pattern sliding sideways), so VP8 has
    real work to do, paced at ``CAMERA_FPS``."""

    kind = "video"

    def __init__(self, width: int, height: int) -> None:
        super().__init__()
        import numpy as np

        y, x = np.mgrid[0:height, 0:width]
        self._pattern = ((x * 3 + y * 2) % 256).astype(np.uint8)
        self._frame = 0
        self._start: float | None = None

    async def recv(self) -> Any:
        import fractions

        import numpy as np
        from av import VideoFrame

        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        wait = self._start + self._frame / CAMERA_FPS - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        shifted = np.roll(self._pattern, self._frame * 4, axis=1)
        image = np.stack([shifted, np.roll(shifted, 40, axis=0), 255 - shifted], axis=-1)
        frame = VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = self._frame * 3000
        frame.time_base = fractions.Fraction(1, 90_000)
        self._frame += 1
        return frame


async def speak(port: int, kind: str, frequency: float, camera: str | None) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.media.peers import ToneTrack

    announce_addresses(asyncio.get_running_loop(), ("127.0.0.1",), ("127.0.0.0/8",))
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(ToneTrack(frequency))
    if camera:
        width, height = (int(n) for n in camera.split("x"))
        pc.addTrack(MovingPicture(width, height))

    async def drain(track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
        except MediaStreamError:
            return

    pc.on("track", lambda track: asyncio.ensure_future(drain(track)))
    await pc.setLocalDescription(await pc.createOffer())
    answer = await signal(
        port,
        {
            "op": "join",
            "kind": kind,
            "user": HALL_USER if kind == "hall" else SPEAKER_USER,
            "sdp": pc.localDescription.sdp,
        },
    )
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    print("ready", flush=True)
    await asyncio.Event().wait()


# --- the driver -------------------------------------------------------------------------
def cpu_secs(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Listeners:
    def __init__(self, port: int, watch: bool = False) -> None:
        self.port = port
        self.watch = watch
        self.procs: list[subprocess.Popen[str]] = []
        # Per process: every (time, counters) sample printed so far.
        self.samples: dict[int, list[tuple[float, list[int]]]] = {}
        # Per process: the start of a line not complete yet.
        self.partial: dict[int, str] = {}
        self.count = 0

    def add(self, count: int, per_process: int) -> None:
        while count > 0:
            batch = min(count, per_process)
            proc = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--listen",
                    str(self.port),
                    str(batch),
                    str(1000 + self.count),
                    *(["--watch"] if self.watch else []),
                ],
                stdout=subprocess.PIPE,
                text=True,
                bufsize=1,
            )
            os.set_blocking(proc.stdout.fileno(), False)  # type: ignore[union-attr]
            self.procs.append(proc)
            self.count += batch
            count -= batch

    def poll(self) -> None:
        for index, proc in enumerate(self.procs):
            assert proc.stdout is not None
            while True:
                line = proc.stdout.readline()
                if not line:
                    break
                # A non-blocking read may stop inside a line: keep the piece for the next.
                line = self.partial.pop(index, "") + line
                if not line.endswith("\n"):
                    self.partial[index] = line
                    break
                sample = json.loads(line)
                self.samples.setdefault(index, []).append((sample["t"], sample["c"]))

    def receiving(self) -> int:
        """Listeners whose counter moved in their process's last second."""
        self.poll()
        moving = 0
        for samples in self.samples.values():
            if len(samples) >= 2:
                (_, before), (_, after) = samples[-2], samples[-1]
                moving += sum(1 for b, a in zip(before, after, strict=False) if a > b)
        return moving

    def rates(self, start: float, end: float) -> list[float]:
        """Frames per second of every listener between the samples nearest start and end."""
        self.poll()
        rates: list[float] = []
        for index in range(len(self.procs)):
            samples = self.samples.get(index, [])
            inside = [s for s in samples if start - 0.5 <= s[0] <= end + 1.5]
            if len(inside) < 2:
                continue
            (t0, c0), (t1, c1) = inside[0], inside[-1]
            rates.extend((b - a) / (t1 - t0) for a, b in zip(c0, c1, strict=False))
        return rates + [0.0] * (self.count - len(rates))

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait()


def measure(
    server_pid: int, port: int, listeners: Listeners | None, window: float
) -> dict[str, Any]:
    stats0 = asyncio.run(signal(port, {"op": "stats"}))
    cpu0, t0 = cpu_secs(server_pid), time.monotonic()
    time.sleep(window)
    cpu1, t1 = cpu_secs(server_pid), time.monotonic()
    stats1 = asyncio.run(signal(port, {"op": "stats"}))
    result: dict[str, Any] = {"cpu": (cpu1 - cpu0) / (t1 - t0)}
    # Frames the floor produced per second, and packets listeners' senders fell behind on.
    result["floor_fps"] = (stats1["ticks"] - stats0["ticks"]) / (t1 - t0)
    result["video_fps"] = (stats1["video_frames"] - stats0["video_frames"]) / (t1 - t0)
    result["keyframes_per_sec"] = (stats1["keyframes"] - stats0["keyframes"]) / (t1 - t0)
    result["encodes_per_tick"] = (stats1["encodes"] - stats0["encodes"]) / max(
        stats1["ticks"] - stats0["ticks"], 1
    )
    result["sender_drops"] = stats1["dropped"] - stats0["dropped"]
    if listeners:
        time.sleep(1.2)  # the clients print once a second: let the window's last sample in
        rates = listeners.rates(t0, t1)
        result["fps_avg"] = sum(rates) / len(rates)
        result["fps_min"] = min(rates)
    return result


def wait_receiving(listeners: Listeners, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        moving = listeners.receiving()
        if moving >= listeners.count:
            return moving
        time.sleep(0.5)
    return listeners.receiving()


@dataclass(frozen=True)
class Case:
    name: str
    mode: str
    hall: bool = False
    camera: bool = False

    @property
    def unit(self) -> str:
        return "viewer" if self.camera else "listener"


CASES = {
    case.name: case
    for case in (
        Case("audio", "encode_once"),
        Case("hybrid", "encode_once", hall=True),
        Case("video", "encode_once", camera=True),
        Case("naive", "naive"),
    )
}


def start_speaker(
    port: int, args: argparse.Namespace, kind: str, frequency: float, camera: bool
) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--speak",
            str(port),
            "--kind",
            kind,
            "--hz",
            str(frequency),
            *(["--camera", args.camera] if camera else []),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    return proc


def wait_video(port: int, timeout: float) -> None:
    """Until the floor's video runs at two thirds of the camera's rate (the camera, the
    decoder and the encoder have warmed up), so the idle figure includes it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = asyncio.run(signal(port, {"op": "stats"}))["video_frames"]
        time.sleep(1)
        after = asyncio.run(signal(port, {"op": "stats"}))["video_frames"]
        if after - before >= CAMERA_FPS * 2 / 3:
            return


def run_design(case: Case, levels: list[int], args: argparse.Namespace) -> dict[str, Any]:
    name = case.name
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", case.mode], stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    port = int(server.stdout.readline())
    speakers = [start_speaker(port, args, "participant", 440, case.camera)]
    if case.hall:
        speakers.append(start_speaker(port, args, "hall", 700, False))
    listeners = Listeners(port, watch=case.camera)
    rows = []
    profile = None
    try:
        if case.camera:
            # The one encode of the floor's video runs while anyone watches: one viewer
            # is part of the idle floor, so the slope is what each further viewer costs.
            listeners.add(1, args.per_process)
            wait_receiving(listeners, args.connect_timeout)
            wait_video(port, args.connect_timeout)
        time.sleep(2)
        quiet = measure(server.pid, port, listeners if case.camera else None, args.window)
        # A starved machine makes the floor tick slower than 50 fps; costs are scaled to
        # the full frame rate by the frames the floor really produced in each window.
        idle = quiet["cpu"] * FULL_FPS / max(quiet["floor_fps"], 1.0)
        base = listeners.count
        print(
            f"[{name}] floor with its speaker{' and the hall' if case.hall else ''}"
            f"{' (camera on, one viewer)' if case.camera else ', no listeners'}: "
            f"{100 * quiet['cpu']:.1f}% of a core at {quiet['floor_fps']:.1f} fps "
            f"({100 * idle:.1f}% at 50 fps); {quiet['encodes_per_tick']:.1f} audio "
            f"encodes per tick; video {quiet['video_fps']:.1f} fps",
            flush=True,
        )
        for level in levels:
            listeners.add(level - listeners.count, args.per_process)
            connected = wait_receiving(listeners, args.connect_timeout)
            time.sleep(args.settle)
            row = measure(server.pid, port, listeners, args.window)
            row["n"] = level
            row["connected"] = connected
            full = row["cpu"] * FULL_FPS / max(row["floor_fps"], 1.0)
            row["per_listener"] = row["per_raw"] = (full - idle) / max(level - base, 1)
            if case.camera and row["video_fps"] < CAMERA_FPS:
                # A starved machine also sends fewer video frames: scaled to the camera's
                # rate, an upper estimate (the audio share is scaled with it).
                row["per_listener"] *= CAMERA_FPS / max(row["video_fps"], 1.0)
            floor_rate = row["video_fps"] if case.camera else row["floor_fps"]
            row["delivered"] = row["fps_avg"] / max(floor_rate, 1.0)
            rows.append(row)
            what = "video" if case.camera else "audio"
            scaled = (
                f" and {CAMERA_FPS} video fps ({100 * row['per_raw']:.2f}% as measured)"
                if case.camera
                else ""
            )
            print(
                f"[{name}] N={level:4d}: server {100 * row['cpu']:5.1f}% of a core with the "
                f"floor at {row['floor_fps']:.1f} fps (video {row['video_fps']:.1f} fps, "
                f"{row['keyframes_per_sec']:.1f} keyframes/s); "
                f"{100 * row['per_listener']:.2f}% per {case.unit} at 50 fps{scaled}; "
                f"{case.unit}s get {row['fps_avg']:.1f} {what} fps avg / "
                f"{row['fps_min']:.1f} min ({100 * row['delivered']:.0f}% of the floor's "
                f"frames; {connected}/{level} receiving before the window; "
                f"{row['encodes_per_tick']:.1f} audio encodes per tick; "
                f"{row['sender_drops']} packets dropped by late senders)",
                flush=True,
            )
        profile = asyncio.run(signal(port, {"op": "profile", "secs": 3}))["profile"]
    finally:
        listeners.stop()
        for speaker in speakers:
            speaker.terminate()
        server.terminate()
        for speaker in speakers:
            speaker.wait()
        server.wait()
    best = rows[-1]
    per = best["per_listener"]
    return {
        "case": case,
        "mode": name,
        "idle": idle,
        "rows": rows,
        "one_core": int((1 - idle) / per) if per > 0 else None,
        "profile": profile,
    }


def report(result: dict[str, Any]) -> None:
    mode = result["mode"]
    unit = result["case"].unit
    best = result["rows"][-1]
    print(f"\n== {mode} ==")
    rate = "50 fps" if unit == "listener" else f"50 audio and {CAMERA_FPS} video fps"
    print(
        f"  server CPU per {unit} at {rate}: {100 * best['per_listener']:.2f}% of a core "
        f"(at N={best['n']}; the floor itself {100 * result['idle']:.1f}%)"
    )
    full = [
        r["n"]
        for r in result["rows"]
        if r["delivered"] >= FULL_RATE_FPS / FULL_FPS and r["cpu"] <= 1
    ]
    print(
        f"  largest N measured at full frame rate within one core: "
        f"{max(full) if full else 'none (the machine was too busy to keep the rate)'}"
    )
    print(
        f"  one core sustains about {result['one_core']} {unit}s at {rate} "
        f"(from the CPU per {unit})"
    )
    profile = result["profile"]
    if profile:
        print("  where the worker thread's time goes:")
        for name, share in sorted(profile["categories"].items(), key=lambda kv: -kv[1]):
            print(f"    {100 * share:5.1f}%  {name}")
        print("  top functions (own time):")
        print(profile["top"], end="")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--levels", default="25,50,100")
    parser.add_argument("--hall-levels", default="25,50,100")
    parser.add_argument("--video-levels", default="10,25,50")
    parser.add_argument("--naive-levels", default="10,20")
    parser.add_argument("--cases", default="audio,hybrid,video,naive")
    parser.add_argument("--camera", default="640x360", help="the speaker camera's size")
    parser.add_argument("--per-process", type=int, default=25)
    parser.add_argument("--window", type=float, default=5.0)
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--connect-timeout", type=float, default=90.0)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--speak", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--kind", default="participant", help=argparse.SUPPRESS)
    parser.add_argument("--hz", type=float, default=440.0, help=argparse.SUPPRESS)
    parser.add_argument("--listen", nargs=3, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--watch", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return
    if args.speak:
        asyncio.run(
            speak(args.speak, args.kind, args.hz, args.camera if "--camera" in sys.argv else None)
        )
        return
    if args.listen:
        port, count, first_user = args.listen
        asyncio.run(listen(port, count, first_user, args.watch))
        return
    levels = {
        "audio": args.levels,
        "hybrid": args.hall_levels,
        "video": args.video_levels,
        "naive": args.naive_levels,
    }
    results = {
        name: run_design(CASES[name], [int(n) for n in levels[name].split(",")], args)
        for name in args.cases.split(",")
    }
    for result in results.values():
        report(result)
    print("\n== side by side (same run) ==")
    for name, result in results.items():
        best = result["rows"][-1]
        print(
            f"  {name:7s} {100 * best['per_listener']:5.2f}% of a core per "
            f"{result['case'].unit} (N={best['n']}); one core: about {result['one_core']} "
            f"{result['case'].unit}s; floor itself {100 * result['idle']:.1f}%"
        )
    once, naive = results.get("audio"), results.get("naive")
    if once and naive and once["rows"] and naive["rows"]:
        ratio = naive["rows"][-1]["per_listener"] / once["rows"][-1]["per_listener"]
        print(
            f"\nencode-once costs {ratio:.1f}x less per listener than naive relaying; "
            f"target >= 100 listeners per core: "
            f"{'met' if (once['one_core'] or 0) >= 100 else 'NOT met'}"
        )
    if once and "hybrid" in results:
        ratio = results["hybrid"]["rows"][-1]["per_listener"] / once["rows"][-1]["per_listener"]
        print(
            f"mix-minus with the hall on the floor: {ratio:.2f}x the audio case's cost per "
            f"listener (3 mixes against 2, encoded once each)"
        )
    if once and "video" in results:
        ratio = results["video"]["rows"][-1]["per_listener"] / once["rows"][-1]["per_listener"]
        print(f"a video viewer costs {ratio:.1f}x an audio listener")


if __name__ == "__main__":
    main()
