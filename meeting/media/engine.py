"""The media worker: aiortc in its own thread, with its own event loop.

Nothing of WebRTC runs on the API's event loop. The API side calls the ``MediaEngine``'s
coroutines (``join``, ``leave``, ``set_floor``, ``close_meeting``), which hand the work to
the worker loop with ``run_coroutine_threadsafe`` and await the answer. What the worker
notices by itself (a peer whose ICE failed, a peer gone silent, a room that emptied and
its finished recording) is passed to the ``notify`` callback, called in the worker thread;
the feature forwards it to the API loop with ``call_soon_threadsafe``.

A room per meeting holds the peers of the meeting and one ``FloorMixer``: each peer's
audio is decoded by aiortc and, when the peer holds the floor, fed to the mixer; otherwise
the frame is dropped as soon as it arrives. Every peer listens through its own
``ListenerTrack`` which the mixer fills with the floor's packets, encoded once per
distinct mix (the floor minus the listener's own voice, see ``floor``).

Peers join as one of ``JOIN_KINDS``: a ``participant`` (a remote delegate or chair, on the
floor when the speakers' queue says so), the ``hall`` (the sound desk's bridge: always on
the floor, at most one per room, its camera shown when the speaker sends none) or a
``viewer`` (the projector: receives the floor, never on it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import unquote

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.exceptions import InternalError, InvalidAccessError, InvalidStateError, OperationError
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import SessionDescription
from av import AudioFrame, VideoFrame

from meeting.media.floor import FloorMixer, ListenerTrack, Mode, VideoFloor
from meeting.media.quality import PeerStats
from meeting.media.recorder import Recorder, RecordingSummary
from server.compat.aioice_addresses import announce_addresses, forget_addresses

log = logging.getLogger("dienhong.media.engine")

T = TypeVar("T")

# How often the worker looks for peers gone silent.
SILENCE_CHECK_SECS = 0.5
# Longest a call into the worker may take (ICE gathering is bounded by aioice itself).
WORKER_CALL_TIMEOUT_SECS = 30.0


class InvalidOffer(ValueError):
    """The SDP offer cannot be used (malformed, wrong type, or no audio)."""


class RoomFull(RuntimeError):
    """The meeting already has the maximum number of remote participants."""


class HallTaken(RuntimeError):
    """The meeting's hall desk is already connected (one hall source per room)."""


JoinKind = Literal["participant", "hall", "viewer"]
JOIN_KINDS: tuple[JoinKind, ...] = ("participant", "hall", "viewer")


@dataclass(frozen=True)
class EngineConfig:
    ice_servers: tuple[str, ...] = ()
    # Host candidate addresses; empty: every interface (aioice's own choice).
    addresses: tuple[str, ...] = ()
    # Networks (CIDR) peers may be reached at; empty: anywhere.
    peer_networks: tuple[str, ...] = ()
    max_participants: int = 200
    silence_timeout_secs: float = 15.0
    # Where floor recordings go; None: no recording.
    recordings_dir: Path | None = None
    mode: Mode = "encode_once"


@dataclass(frozen=True)
class Floor:
    """Who everyone hears (the chairs and the speaker) and whose video everyone sees."""

    audio: frozenset[int] = frozenset()
    video: int | None = None


@dataclass(frozen=True)
class PeerInfo:
    session_id: str
    meeting_id: int
    user_id: int
    kind: JoinKind = "participant"


@dataclass(frozen=True)
class Joined:
    peer: PeerInfo
    answer_sdp: str
    # Set when this join started recording the room's floor (the first join that is not a
    # viewer: a projector alone records nothing).
    recording_path: Path | None


@dataclass(frozen=True)
class PeerGone:
    """The worker dropped a peer by itself (``failed``, ``silent``, ``closed`` by the peer,
    ``shutdown`` of the server)."""

    peer: PeerInfo
    reason: str


@dataclass(frozen=True)
class RoomClosed:
    meeting_id: int
    recording: RecordingSummary | None


@dataclass(frozen=True)
class RecordingEnded:
    """The last peer that is not a viewer left: the recording ends, the room goes on (the
    projector still watches)."""

    meeting_id: int
    recording: RecordingSummary


Notice = PeerGone | RoomClosed | RecordingEnded


# What the floor is encoded in: every listener must accept it.
FLOOR_CODECS = {"audio": "audio/opus", "video": "video/vp8"}
# What aiortc's SDP parsing raises on malformed input.
SDP_ERRORS = (
    ValueError,
    AssertionError,
    IndexError,
    KeyError,
    TypeError,
    InternalError,
    InvalidAccessError,
    InvalidStateError,
    OperationError,
)


def check_offer(sdp: str) -> frozenset[str]:
    """The kinds the offer may receive the floor in; ``InvalidOffer`` if it is unusable.

    An offer needs an audio section that accepts Opus, with ICE credentials and a DTLS
    fingerprint. Video is sent only if the offer accepts VP8 (otherwise its camera is still
    received, but it is sent no video).
    """
    if not sdp.lstrip().startswith("v=0"):
        raise InvalidOffer("The SDP offer must start with 'v=0'.")
    try:
        parsed = SessionDescription.parse(sdp)
    except SDP_ERRORS as exc:
        raise InvalidOffer(f"The SDP offer cannot be parsed: {exc or type(exc).__name__}.") from exc
    kinds = set()
    for media in parsed.media:
        if media.kind not in FLOOR_CODECS:
            continue
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            raise InvalidOffer(f"The {media.kind} section has no ICE username and password.")
        if media.dtls is None or not media.dtls.fingerprints:
            raise InvalidOffer(f"The {media.kind} section has no DTLS fingerprint.")
        if any(c.mimeType.lower() == FLOOR_CODECS[media.kind] for c in media.rtp.codecs):
            kinds.add(media.kind)
    if not any(media.kind == "audio" for media in parsed.media):
        raise InvalidOffer("The SDP offer has no audio section.")
    if "audio" not in kinds:
        raise InvalidOffer("The SDP offer's audio does not accept Opus.")
    return frozenset(kinds)


def floor_codecs(kind: str) -> list[Any]:
    capabilities = RTCRtpSender.getCapabilities(kind)
    return [c for c in capabilities.codecs if c.mimeType.lower() == FLOOR_CODECS[kind]]


def ice_server(url: str) -> RTCIceServer:
    """``stun:host:port`` or ``turn:user:password@host:port[?transport=udp]``."""
    scheme, _, rest = url.partition(":")
    if "@" in rest:
        credentials, _, address = rest.rpartition("@")
        username, _, password = credentials.partition(":")
        return RTCIceServer(
            f"{scheme}:{address}", username=unquote(username), credential=unquote(password)
        )
    return RTCIceServer(url)


@dataclass
class Peer:
    info: PeerInfo
    pc: RTCPeerConnection
    listener: ListenerTrack
    last_media_at: float
    video_listener: ListenerTrack | None = None
    # Receivers of the peer's camera: enabled only while the peer is the floor's video.
    video_receivers: list[Any] = field(default_factory=list)
    sends_audio: bool = False
    sends_video: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    closing: bool = False


@dataclass
class Room:
    meeting_id: int
    mixer: FloorMixer
    ticker: asyncio.Task[None]
    recorder: Recorder | None
    floor: Floor = Floor()
    video: VideoFloor = field(default_factory=VideoFloor)
    peers: dict[str, Peer] = field(default_factory=dict)

    @property
    def hall(self) -> Peer | None:
        return next((p for p in self.peers.values() if p.info.kind == "hall"), None)


class MediaEngine:
    def __init__(self, config: EngineConfig, notify: Callable[[Notice], None]) -> None:
        self.config = config
        self._notify = notify
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._rooms: dict[int, Room] = {}
        self._peers: dict[str, Peer] = {}
        self._monitor: asyncio.Task[None] | None = None
        # Snapshot of meetings with a room, readable from the API thread.
        self._active_lock = threading.Lock()
        self._active: frozenset[int] = frozenset()

    # --- lifecycle (API side) ----------------------------------------------------------
    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            announce_addresses(loop, self.config.addresses, self.config.peer_networks)
            loop.call_soon(ready.set)
            self._monitor = loop.create_task(self._watch_silence())
            try:
                loop.run_forever()
            finally:
                forget_addresses(loop)
                loop.close()

        self._thread = threading.Thread(target=run, name="media-worker", daemon=True)
        self._thread.start()
        ready.wait()

    async def stop(self) -> None:
        """Close every peer and room, then stop the worker loop and its thread."""
        if self._loop is None or self._thread is None:
            return
        with contextlib.suppress(Exception):
            await self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    def _submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        assert self._loop is not None, "media worker not started"
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        # ``asyncio.timeout``, not ``wait_for``: on Python 3.11 ``wait_for`` returns the
        # result of a call that finishes as its caller is cancelled and drops the
        # cancellation, and a poll loop that loses its cancellation never ends.
        async with asyncio.timeout(WORKER_CALL_TIMEOUT_SECS):
            return await asyncio.wrap_future(self._submit(coro))

    # --- the API side's calls ------------------------------------------------------------
    async def join(
        self, meeting_id: int, user_id: int, sdp: str, floor: Floor, kind: JoinKind = "participant"
    ) -> Joined:
        """Answer ``sdp`` (ICE gathered); raises ``InvalidOffer``, ``RoomFull`` or
        ``HallTaken``."""
        return await self._call(self._join(meeting_id, user_id, sdp, floor, kind))

    async def leave(self, session_id: str) -> PeerInfo | None:
        return await self._call(self._leave(session_id))

    async def set_floor(self, meeting_id: int, floor: Floor) -> None:
        await self._call(self._set_floor(meeting_id, floor))

    async def close_meeting(self, meeting_id: int) -> list[PeerInfo]:
        """Drop every peer of the meeting (it was closed); returns who was dropped."""
        return await self._call(self._close_meeting(meeting_id))

    def active_meetings(self) -> frozenset[int]:
        with self._active_lock:
            return self._active

    async def peers(self, meeting_id: int) -> list[PeerInfo]:
        async def collect() -> list[PeerInfo]:
            room = self._rooms.get(meeting_id)
            return [p.info for p in room.peers.values()] if room else []

        return await self._call(collect())

    async def room_stats(self, meeting_id: int) -> dict[str, int]:
        async def collect() -> dict[str, int]:
            room = self._rooms.get(meeting_id)
            if room is None:
                return {}
            return {
                "ticks": room.mixer.ticks,
                "packets": room.mixer.packets,
                "encodes": room.mixer.encodes,
                "mixes": 1 + len(room.mixer.mixes()),
                "video_frames": room.video.frames,
                "keyframes": room.video.keyframes,
                "listeners": len(room.mixer.listeners),
                "dropped": sum(p.listener.dropped for p in room.peers.values()),
            }

        return await self._call(collect())

    # --- worker side --------------------------------------------------------------------
    def _publish_active(self) -> None:
        with self._active_lock:
            self._active = frozenset(self._rooms)

    def _open_room(self, meeting_id: int, floor: Floor) -> Room:
        room_box: list[Room] = []

        def record(packet: Any) -> None:
            recorder = room_box[0].recorder if room_box else None
            if recorder is not None:
                recorder.offer(packet)

        mixer = FloorMixer(
            self.config.mode, on_packet=record if self.config.recordings_dir else None
        )
        ticker = asyncio.get_running_loop().create_task(mixer.run(), name=f"floor-{meeting_id}")
        room = Room(meeting_id, mixer, ticker, None, floor)
        room_box.append(room)
        self._rooms[meeting_id] = room
        self._publish_active()
        return room

    def _start_recording(self, room: Room) -> Path | None:
        """Start recording the floor if it is not yet; the new file's path, else None."""
        if self.config.recordings_dir is None or room.recorder is not None:
            return None
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        name = f"meeting-{room.meeting_id}/{stamp}-{secrets.token_hex(4)}.ogg"
        room.recorder = Recorder(self.config.recordings_dir / name, room.mixer.extradata)
        return room.recorder.path

    async def _end_recording(self, room: Room) -> RecordingSummary | None:
        recorder, room.recorder = room.recorder, None
        if recorder is None:
            return None
        return await asyncio.get_running_loop().run_in_executor(None, recorder.close)

    async def _close_room(self, room: Room) -> None:
        self._rooms.pop(room.meeting_id, None)
        self._publish_active()
        room.ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await room.ticker
        self._notify(RoomClosed(room.meeting_id, await self._end_recording(room)))

    def _check_room(self, room: Room | None, kind: JoinKind) -> None:
        if room is None:
            return
        if len(room.peers) >= self.config.max_participants:
            raise RoomFull(
                f"The meeting already has {self.config.max_participants} remote participants."
            )
        if kind == "hall" and room.hall is not None:
            raise HallTaken(f"The hall desk of meeting {room.meeting_id} is already connected.")

    async def _join(
        self, meeting_id: int, user_id: int, sdp: str, floor: Floor, kind: JoinKind
    ) -> Joined:
        self._check_room(self._rooms.get(meeting_id), kind)
        pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[ice_server(url) for url in self.config.ice_servers])
        )
        info = PeerInfo(secrets.token_urlsafe(12), meeting_id, user_id, kind)
        listener = ListenerTrack()
        peer = Peer(info, pc, listener, last_media_at=asyncio.get_running_loop().time())
        remote_tracks: list[MediaStreamTrack] = []
        pc.on("track", remote_tracks.append)
        try:
            kinds = check_offer(sdp)
            # Transceivers made before the offer is applied take its first section of their
            # kind, with only the floor's codec allowed: the packets we hand them are Opus
            # (and VP8), so nothing else may be negotiated.
            for media_kind in sorted(kinds):
                pc.addTransceiver(media_kind, direction="sendrecv").setCodecPreferences(
                    floor_codecs(media_kind)
                )
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            except SDP_ERRORS as exc:
                raise InvalidOffer(
                    f"The SDP offer cannot be used: {exc or type(exc).__name__}."
                ) from exc
            pc.addTrack(listener)
            video_sender = None
            if "video" in kinds:
                peer.video_listener = ListenerTrack("video")
                video_sender = pc.addTrack(peer.video_listener)
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except BaseException:
            listener.stop()
            if peer.video_listener is not None:
                peer.video_listener.stop()
            await pc.close()
            raise
        # Rooms may have changed while ICE was gathered.
        room = self._rooms.get(meeting_id)
        try:
            self._check_room(room, kind)
        except (RoomFull, HallTaken):
            listener.stop()
            if peer.video_listener is not None:
                peer.video_listener.stop()
            await pc.close()
            raise
        if room is None:
            room = self._open_room(meeting_id, floor)
        room.peers[info.session_id] = peer
        self._peers[info.session_id] = peer
        room.mixer.add_listener(listener, own=info.session_id)
        if peer.video_listener is not None and video_sender is not None:
            room.video.add_listener(peer.video_listener, own=info.session_id)
            # aiortc's sender turns a listener's PLI into a request for the next frame it
            # encodes itself; it encodes nothing here (it packetises the floor's packets),
            # so the request goes to the floor's one encoder. A newcomer needs one anyway.
            video_sender._send_keyframe = room.video.request_keyframe  # type: ignore[method-assign]
            room.video.request_keyframe()
        peer.video_receivers = [t.receiver for t in pc.getTransceivers() if t.kind == "video"]
        loop = asyncio.get_running_loop()
        for track in remote_tracks:
            if track.kind == "audio":
                peer.sends_audio = True
            else:
                peer.sends_video = True
            peer.tasks.append(loop.create_task(self._consume(peer, track)))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed") and not peer.closing:
                await self._drop(peer, "failed" if pc.connectionState == "failed" else "closed")

        self._apply_floor(room)
        local = pc.localDescription
        return Joined(info, local.sdp, None if kind == "viewer" else self._start_recording(room))

    async def _consume(self, peer: Peer, track: MediaStreamTrack) -> None:
        """Read a peer's media as it arrives: the floor's audio goes to the mixer, the rest
        is dropped at once (aiortc's own queue is thus never left to grow)."""
        loop = asyncio.get_running_loop()
        key = peer.info.session_id
        room = self._rooms.get(peer.info.meeting_id)
        try:
            while True:
                frame = await track.recv()
                peer.last_media_at = loop.time()
                if room is None:
                    continue
                if isinstance(frame, AudioFrame):
                    room.mixer.feed(key, frame)
                elif isinstance(frame, VideoFrame):
                    room.video.feed(key, frame)
        except MediaStreamError:
            return

    def _apply_floor(self, room: Room) -> None:
        # The hall is always on the floor; a viewer never is; a participant when the
        # speakers' queue (or the chair's role) puts them there. Only peers that send
        # audio are sources: a listen-only chair gets no mix-minus of its own.
        room.mixer.set_sources(
            key
            for key, peer in room.peers.items()
            if peer.sends_audio
            and (
                peer.info.kind == "hall"
                or (peer.info.kind == "participant" and peer.info.user_id in room.floor.audio)
            )
        )
        # The speaker's camera, else the hall's camera (if the desk sends one).
        cameras = [
            (key, peer)
            for key, peer in room.peers.items()
            if peer.sends_video and peer.info.kind != "viewer"
        ]
        source = next(
            (
                key
                for key, peer in cameras
                if peer.info.kind == "participant" and peer.info.user_id == room.floor.video
            ),
            None,
        )
        if source is None:
            source = next((key for key, peer in cameras if peer.info.kind == "hall"), None)
        room.video.set_source(source)
        # A camera off the floor is dropped as its packets arrive, before the jitter buffer
        # and the decoder (aiortc's receiver skips RTP while disabled). Enabled again, the
        # receiver sees the gap in sequence numbers and asks the tablet for a keyframe.
        for key, peer in room.peers.items():
            for receiver in peer.video_receivers:
                receiver._enabled = key == source

    async def _set_floor(self, meeting_id: int, floor: Floor) -> None:
        room = self._rooms.get(meeting_id)
        if room is not None and room.floor != floor:
            room.floor = floor
            self._apply_floor(room)

    async def _leave(self, session_id: str) -> PeerInfo | None:
        peer = self._peers.get(session_id)
        if peer is None or peer.closing:
            return None
        await self._remove(peer)
        return peer.info

    async def _drop(self, peer: Peer, reason: str) -> None:
        if peer.closing:
            return
        await self._remove(peer, notice=PeerGone(peer.info, reason))

    async def _remove(self, peer: Peer, notice: PeerGone | None = None) -> None:
        """Close the peer; the room closes (and its recording ends) with its last peer; the
        recording ends already when only viewers are left."""
        peer.closing = True
        self._peers.pop(peer.info.session_id, None)
        room = self._rooms.get(peer.info.meeting_id)
        if room is not None:
            room.peers.pop(peer.info.session_id, None)
            room.mixer.remove_listener(peer.listener)
            if peer.video_listener is not None:
                room.video.remove_listener(peer.video_listener)
            self._apply_floor(room)
        peer.listener.stop()
        if peer.video_listener is not None:
            peer.video_listener.stop()
        for task in peer.tasks:
            task.cancel()
        await peer.pc.close()
        if notice is not None:
            self._notify(notice)
        if room is None or self._rooms.get(room.meeting_id) is not room:
            return
        if not room.peers:
            await self._close_room(room)
        elif all(p.info.kind == "viewer" for p in room.peers.values()):
            summary = await self._end_recording(room)
            if summary is not None:
                self._notify(RecordingEnded(room.meeting_id, summary))

    async def _close_meeting(self, meeting_id: int) -> list[PeerInfo]:
        room = self._rooms.get(meeting_id)
        if room is None:
            return []
        dropped = []
        for peer in list(room.peers.values()):
            if not peer.closing:
                await self._remove(peer)
                dropped.append(peer.info)
        return dropped

    async def _watch_silence(self) -> None:
        loop = asyncio.get_running_loop()
        timeout = self.config.silence_timeout_secs
        while True:
            await asyncio.sleep(min(SILENCE_CHECK_SECS, timeout / 2))
            now = loop.time()
            for peer in list(self._peers.values()):
                # A listen-only peer sends no audio; aioice's consent checks catch it.
                if peer.sends_audio and now - peer.last_media_at > timeout:
                    try:
                        await self._drop(peer, "silent")
                    except Exception:
                        log.exception("dropping silent peer %s failed", peer.info.session_id)

    async def _shutdown(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
        for room in list(self._rooms.values()):
            for peer in list(room.peers.values()):
                if not peer.closing:
                    await self._drop(peer, "shutdown")

    # --- remote attendance: measurements for the chair ------------------------------------
    async def peer_stats(self) -> list[PeerStats]:
        """What the worker measures of every peer: ICE state, seconds since its last media,
        round-trip time and loss from the tablet's receiver reports."""
        return await self._call(self._peer_stats())

    async def _peer_stats(self) -> list[PeerStats]:
        now = asyncio.get_running_loop().time()
        found = []
        for peer in list(self._peers.values()):
            if peer.closing:
                continue
            rtt: float | None = None
            loss: float | None = None
            with contextlib.suppress(Exception):
                for stats in (await peer.pc.getStats()).values():
                    if stats.type == "remote-inbound-rtp" and stats.kind == "audio":
                        rtt = stats.roundTripTime
                        # RTCP carries the fraction lost in 1/256ths.
                        loss = stats.fractionLost / 256
            found.append(
                PeerStats(
                    session_id=peer.info.session_id,
                    meeting_id=peer.info.meeting_id,
                    user_id=peer.info.user_id,
                    ice_state=peer.pc.iceConnectionState,
                    idle_secs=now - peer.last_media_at,
                    sends_audio=peer.sends_audio,
                    rtt_secs=rtt,
                    loss=loss,
                )
            )
        return found

    @property
    def running(self) -> bool:
        """Whether the worker still takes calls (not once ``stop`` began closing it)."""
        loop = self._loop
        return self._thread is not None and loop is not None and loop.is_running()
