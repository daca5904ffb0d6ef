"""Remote attendance: who may join a meeting's media, the floor, events and recordings.

Runs on the API's event loop and only awaits the media worker (``MediaEngine``), whose
aiortc work runs in its own thread. Every state change a meeting's tablets should see
(``media.joined``, ``media.left``) goes through ``ctx.write()`` and is audited.

The hall's sound desk joins as the ``hall`` (chairs, secretaries and administrators only,
one per meeting) and is always on the floor; the projector joins as a ``viewer``. Beyond the
hall, the floor is the meeting's chairs plus the delegate the speakers' queue has given the
floor (``meeting.speakers.floor_holder``). ``follow_floor`` re-reads it for every meeting
with a live room every ``media_floor_poll_secs`` and tells the worker when it changed, so a grant
or a finish is heard everywhere well within a second, on whichever node wrote it.

Remote attendance: a join during the session checks the participant in as remote
(``meeting.attendance``); ``watch_connections`` rates every peer's connection every
``media_quality_poll_secs`` (``media.quality`` when the rating changes) and pauses the
speech of a remote speaker whose audio is lost (``speaker.paused``), resuming it when it is
heard again; a speech paused for longer than ``media_floor_grace_secs`` ends. The chair
mutes a remote microphone (the muted participant leaves the floor's mix), asks for it to be
unmuted (only the participant unmutes), or removes the participant from the sitting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from meeting.attendance import (
    attend_remotely,
    end_remote_attendance,
    live_remote_row,
    participant_entry,
)
from meeting.events import (
    emit_media_joined,
    emit_media_left,
    emit_media_muted,
    emit_media_quality,
    emit_media_unmute_requested,
)
from meeting.media.engine import (
    EngineConfig,
    Floor,
    HallTaken,
    InvalidOffer,
    Joined,
    JoinKind,
    MediaEngine,
    Notice,
    PeerGone,
    PeerInfo,
    RecordingEnded,
    RoomClosed,
    RoomFull,
)
from meeting.media.models import MediaRecording
from meeting.media.quality import Connection, PeerStats, rate
from meeting.models import (
    CHAIR_ROLES,
    OFFICER_ROLES,
    Attendance,
    MeetingState,
    Participant,
    ParticipantRole,
)
from meeting.service import floor_holder, get_participant, meeting_topic, require_meeting
from meeting.speakers import finish_paused_speeches, pause_speech, resume_speech
from server.auth.principal import Principal
from server.context import Context, Write
from server.errors import BadRequest, Conflict, Forbidden, NotFound, Unprocessable
from server.settings import Settings

log = logging.getLogger("dienhong.media")

# Recordings live under <data_dir>/RECORDINGS_DIR.
RECORDINGS_DIR = "recordings"


@dataclass
class MediaRuntime:
    """The feature's runtime state on this node (``runtime(ctx)``)."""

    engine: MediaEngine
    # Floor last told to the worker, per meeting with a room.
    floors: dict[int, Floor] = field(default_factory=dict)
    # Notices from the worker being written; kept so they are not garbage-collected.
    pending: set[asyncio.Task[None]] = field(default_factory=set)
    # Connection rating last written, per media session of this node.
    connections: dict[str, Connection] = field(default_factory=dict)


def engine_config(settings: Settings) -> EngineConfig:
    """The media worker's configuration from the ``media_*`` settings."""
    return EngineConfig(
        ice_servers=settings.media_ice_servers,
        addresses=settings.media_addresses,
        peer_networks=settings.media_peer_networks,
        max_participants=settings.media_max_participants,
        silence_timeout_secs=settings.media_silence_timeout_secs,
        recordings_dir=settings.data_dir / RECORDINGS_DIR if settings.media_record else None,
    )


def runtime(ctx: Context) -> MediaRuntime:
    """The running media feature of this node."""
    found = ctx.runtimes.get(MediaRuntime)
    if found is None:
        raise RuntimeError("the media feature is not started")
    return found


async def start_media(ctx: Context) -> None:
    """Start the media worker thread (feature start-up)."""
    loop = asyncio.get_running_loop()
    box: list[MediaRuntime] = []

    def notify(notice: Notice) -> None:
        # Called in the worker thread: hand over to the API loop.
        try:
            loop.call_soon_threadsafe(_schedule_notice, ctx, box[0], notice)
        except RuntimeError:
            log.warning("media notice after the API loop closed: %s", notice)

    engine = MediaEngine(engine_config(ctx.settings), notify)
    box.append(MediaRuntime(engine))
    engine.start()
    ctx.runtimes.put(box[0])


def _schedule_notice(ctx: Context, state: MediaRuntime, notice: Notice) -> None:
    task = asyncio.create_task(handle_notice(ctx, notice))
    state.pending.add(task)
    task.add_done_callback(state.pending.discard)


async def run_media(ctx: Context) -> None:
    """Background task: follow the floor and watch the connections; at shutdown stop the
    worker."""
    state = runtime(ctx)
    watcher = asyncio.create_task(
        _repeat(
            ctx,
            ctx.settings.media_quality_poll_secs,
            watch_connections,
            "watching the remote connections",
        ),
        name="media-connections",
    )
    try:
        await _repeat(ctx, ctx.settings.media_floor_poll_secs, follow_floor, "following the floor")
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await state.engine.stop()
        if state.pending:
            await asyncio.gather(*state.pending, return_exceptions=True)


# --- the floor ----------------------------------------------------------------------------
async def current_floor(session: AsyncSession, meeting_id: int) -> Floor:
    """Everyone hears the chairs and the delegate holding the floor, and sees the latter."""
    stmt = select(Participant.user_id).where(
        Participant.meeting_id == meeting_id, Participant.role == ParticipantRole.CHAIR.value
    )
    users = {int(uid) for uid in (await session.execute(stmt)).scalars()}
    holder = await floor_holder(session, meeting_id)
    if holder is not None:
        users.add(holder)
    # A microphone the chair (or its owner) muted is not mixed into the floor.
    muted = select(Attendance.user_id).where(
        Attendance.meeting_id == meeting_id, Attendance.muted_by.is_not(None)
    )
    users -= {int(uid) for uid in (await session.execute(muted)).scalars()}
    return Floor(frozenset(users), holder)


async def follow_floor(ctx: Context) -> None:
    """Tell the worker the current floor of every meeting with a room; end closed ones."""
    state = runtime(ctx)
    active = state.engine.active_meetings()
    for gone in set(state.floors) - active:
        del state.floors[gone]
    for meeting_id in active:
        async with ctx.read() as session:
            meeting = await require_meeting(session, meeting_id)
            closed = meeting.lifecycle is MeetingState.CLOSED
            floor = Floor() if closed else await current_floor(session, meeting_id)
        if closed:
            for peer in await state.engine.close_meeting(meeting_id):
                await _left(ctx, peer, "meeting_closed", actor_id=None)
            continue
        if state.floors.get(meeting_id) != floor:
            await state.engine.set_floor(meeting_id, floor)
            state.floors[meeting_id] = floor


# --- joining and leaving ----------------------------------------------------------------
def may_join_as(
    kind: JoinKind, participant: Participant | None, principal: Principal
) -> str | None:
    """Why ``principal`` may not join as ``kind`` (an error code), or None when it may.

    The hall desk carries the hall's sound into the floor: the meeting's officers (chair,
    secretary) and administrators only. A viewer (the projector): a participant or an
    administrator. A remote participant: a participant of the meeting.
    """
    if kind != "participant" and principal.is_admin:
        return None
    if participant is None:
        return "not_a_participant"
    if kind == "hall" and participant.participant_role not in OFFICER_ROLES:
        return "not_officer"
    return None


async def do_join(
    ctx: Context, principal: Principal, meeting_id: int, sdp: str, kind: JoinKind = "participant"
) -> dict[str, Any]:
    """Answer an SDP offer of ``kind`` and announce ``media.joined`` on the meeting."""
    async with ctx.read() as session:
        meeting = await require_meeting(session, meeting_id)
        participant = await get_participant(session, meeting_id, principal.id)
        refused = may_join_as(kind, participant, principal)
        if refused == "not_a_participant":
            raise Forbidden(
                f"You do not take part in meeting {meeting_id}.", code="not_a_participant"
            )
        if refused is not None:
            raise Forbidden(
                "Only the meeting's chair or secretary (or an administrator) may "
                "connect the hall's sound desk.",
                code=refused,
            )
        if meeting.lifecycle is MeetingState.CLOSED:
            raise Conflict(f"Meeting {meeting_id} is closed.", code="meeting_closed")
        floor = await current_floor(session, meeting_id)
    state = runtime(ctx)
    try:
        joined: Joined = await state.engine.join(meeting_id, principal.id, sdp, floor, kind)
    except InvalidOffer as exc:
        raise BadRequest(str(exc), code="invalid_sdp") from exc
    except RoomFull as exc:
        raise Conflict(str(exc), code="media_full") from exc
    except HallTaken as exc:
        raise Conflict(str(exc), code="media_hall_connected") from exc
    state.floors.setdefault(meeting_id, floor)
    session_id = joined.peer.session_id
    try:
        async with ctx.write() as w:
            meeting = await require_meeting(w.session, meeting_id, lock=True)
            # Only a person attends: the hall's desk and the projector check nobody in.
            if kind == "participant" and participant is not None:
                await attend_remotely(w, meeting, principal.id, session_id)
            if joined.recording_path is not None:
                w.session.add(
                    MediaRecording(
                        meeting_id=meeting_id,
                        path=_relative(ctx, joined.recording_path),
                        started_by=principal.id,
                        started_at=w.now,
                        dropped_packets=0,
                    )
                )
            await emit_media_joined(
                w,
                meeting_id,
                session_id=session_id,
                user_id=principal.id,
                role=participant.role if participant else "admin",
                kind=kind,
            )
            await w.audit(
                principal.id,
                "media.join",
                meeting_topic(meeting_id),
                {"session_id": session_id, "kind": kind},
            )
    except BaseException:
        await state.engine.leave(session_id)
        raise
    # The join wrote the connection as good; the watcher writes only what changes.
    state.connections.setdefault(session_id, Connection.GOOD)
    # A tablet that rejoins after a drop supersedes its stale session (of the same kind:
    # the chair's account may hold the hall desk and a tablet at once).
    for stale in await state.engine.peers(meeting_id):
        if stale.user_id == principal.id and stale.kind == kind and stale.session_id != session_id:
            gone = await state.engine.leave(stale.session_id)
            if gone is not None:
                await _left(ctx, gone, "replaced", actor_id=principal.id)
    return {"sdp": joined.answer_sdp, "type": "answer", "session_id": session_id}


async def _find_peer(ctx: Context, meeting_id: int, session_id: str) -> PeerInfo | None:
    peers = await runtime(ctx).engine.peers(meeting_id)
    return next((p for p in peers if p.session_id == session_id), None)


async def _require_chair(ctx: Context, principal: Principal, meeting_id: int, what: str) -> None:
    async with ctx.read() as session:
        await require_meeting(session, meeting_id)
        participant = await get_participant(session, meeting_id, principal.id)
    if participant is None:
        raise Forbidden(f"You do not take part in meeting {meeting_id}.", code="not_a_participant")
    if participant.participant_role not in CHAIR_ROLES:
        raise Forbidden(f"Only the meeting's chair may {what}.", code="not_chair")


async def do_leave(ctx: Context, principal: Principal, meeting_id: int, session_id: str) -> None:
    """End a media session: one's own (``media.left`` with reason ``left``), or, for the
    chair, anyone's (reason ``removed``). Either checks a remote participant out."""
    peer = await _find_peer(ctx, meeting_id, session_id)
    if peer is not None and peer.user_id != principal.id:
        await _require_chair(ctx, principal, meeting_id, "remove someone from the sitting")
    elif peer is None:
        async with ctx.read() as session:
            await require_meeting(session, meeting_id)
    if peer is None:
        raise _no_session(meeting_id, session_id)
    left = await runtime(ctx).engine.leave(session_id)
    if left is not None:
        reason = "left" if peer.user_id == principal.id else "removed"
        await _left(ctx, left, reason, actor_id=principal.id, check_out=True)


async def _left(
    ctx: Context, peer: PeerInfo, reason: str, *, actor_id: int | None, check_out: bool = False
) -> None:
    runtime(ctx).connections.pop(peer.session_id, None)
    async with ctx.write() as w:
        meeting = await require_meeting(w.session, peer.meeting_id, lock=True)
        await emit_media_left(
            w, peer.meeting_id, session_id=peer.session_id, user_id=peer.user_id, reason=reason
        )
        await w.audit(
            actor_id,
            "media.leave",
            meeting_topic(peer.meeting_id),
            {"session_id": peer.session_id, "user_id": peer.user_id, "reason": reason},
        )
        if peer.kind == "participant":
            await end_remote_attendance(
                w, meeting, peer.user_id, peer.session_id, check_out=check_out, actor_id=actor_id
            )


# --- the chair's controls ---------------------------------------------------------------
async def do_mute(
    ctx: Context, principal: Principal, meeting_id: int, session_id: str, muted: bool
) -> dict[str, Any]:
    """Mute a remote microphone (the chair, or its owner) or unmute one's own.

    The chair cannot unmute someone (422 ``unmute_by_owner``: ask with an unmute request);
    a participant the chair muted unmutes only once asked (403 ``muted_by_chair``)."""
    peer = await _find_peer(ctx, meeting_id, session_id)
    own = peer is not None and peer.user_id == principal.id
    if peer is not None and not own:
        await _require_chair(ctx, principal, meeting_id, "mute a remote participant")
        if not muted:
            raise Unprocessable(
                "Only the participant unmutes; ask them with an unmute request.",
                code="unmute_by_owner",
            )
    participant = _live_participant(meeting_id, session_id, peer)
    async with ctx.write() as w:
        row = await _live_row(w, meeting_id, participant, session_id)
        if (
            own
            and not muted
            and row.muted_by not in (None, principal.id)
            and not row.unmute_requested
        ):
            raise Forbidden(
                "The chair muted your microphone; it can be unmuted once the chair asks.",
                code="muted_by_chair",
            )
        row.muted_by = principal.id if muted else None
        row.unmute_requested = False
        entry = await participant_entry(w, meeting_id, participant)
        await w.audit(
            principal.id,
            "media.mute",
            meeting_topic(meeting_id),
            {"session_id": session_id, "user_id": participant, "muted": muted},
        )
        await emit_media_muted(
            w,
            meeting_id,
            session_id=session_id,
            user_id=participant,
            muted=muted,
            by=principal.id,
            participant=entry,
        )
    await follow_floor(ctx)
    return entry


async def do_request_unmute(
    ctx: Context, principal: Principal, meeting_id: int, session_id: str
) -> dict[str, Any]:
    """The chair asks a muted remote participant to unmute (their tablet shows a prompt).

    409 ``not_muted`` when the microphone is not muted."""
    await _require_chair(ctx, principal, meeting_id, "ask a remote participant to unmute")
    peer = await _find_peer(ctx, meeting_id, session_id)
    participant = _live_participant(meeting_id, session_id, peer)
    async with ctx.write() as w:
        row = await _live_row(w, meeting_id, participant, session_id)
        if row.muted_by is None:
            raise Conflict("That microphone is not muted.", code="not_muted")
        row.unmute_requested = True
        entry = await participant_entry(w, meeting_id, participant)
        await w.audit(
            principal.id,
            "media.unmute_request",
            meeting_topic(meeting_id),
            {"session_id": session_id, "user_id": participant},
        )
        await emit_media_unmute_requested(
            w,
            meeting_id,
            session_id=session_id,
            user_id=participant,
            by=principal.id,
            participant=entry,
        )
    return entry


def _no_session(meeting_id: int, session_id: str) -> NotFound:
    return NotFound(
        f"No media session {session_id!r} in meeting {meeting_id}.", code="media_session_not_found"
    )


def _live_participant(meeting_id: int, session_id: str, peer: PeerInfo | None) -> int:
    if peer is None:
        raise _no_session(meeting_id, session_id)
    return peer.user_id


async def _live_row(w: Write, meeting_id: int, user_id: int, session_id: str) -> Attendance:
    row = await live_remote_row(w, meeting_id, user_id, session_id)
    if row is None:
        raise _no_session(meeting_id, session_id)
    return row


# --- connections --------------------------------------------------------------------------
async def _repeat(
    ctx: Context, every_secs: float, step: Callable[[Context], Awaitable[None]], what: str
) -> None:
    """Run ``step`` every ``every_secs`` (a poll interval) until cancelled; a failed round
    is logged and the next one comes."""
    task = asyncio.current_task()
    while True:
        await asyncio.sleep(every_secs)
        try:
            await step(ctx)
        except Exception:
            log.exception("%s failed", what)
        # A cancellation that a step let go of (some library code does) still ends the
        # loop: shutdown waits for it.
        if task is not None and task.cancelling():
            raise asyncio.CancelledError


async def watch_connections(ctx: Context) -> None:
    """Rate every peer of this node (``media.quality`` on a change); pause the speech of a
    remote speaker whose audio is lost and resume it when it is back; end speeches paused
    for longer than the grace period."""
    state = runtime(ctx)
    settings = ctx.settings
    measured: list[PeerStats] = await state.engine.peer_stats()
    # A participant is lost when every session of theirs is (a rejoin has a second one).
    lost: dict[tuple[int, int], bool] = {}
    for stats in measured:
        rating = rate(stats, settings.media_audio_lost_secs)
        if state.connections.get(stats.session_id) != rating:
            if await _rate(ctx, stats, rating):
                state.connections[stats.session_id] = rating
        key = (stats.meeting_id, stats.user_id)
        lost[key] = lost.get(key, True) and rating is Connection.LOST
    # Only the speaker's connection moves the floor: one read per meeting, not per peer.
    for meeting_id in {meeting_id for meeting_id, _ in lost}:
        async with ctx.read() as session:
            holder = await floor_holder(session, meeting_id)
        if holder is not None and (meeting_id, holder) in lost:
            await _follow_speaker(ctx, meeting_id, holder, lost=lost[(meeting_id, holder)])
    live = {s.session_id for s in measured}
    for gone in set(state.connections) - live:
        del state.connections[gone]
    older_than = ctx.clock.now() - timedelta(seconds=settings.media_floor_grace_secs)
    await finish_paused_speeches(ctx, older_than)


async def _rate(ctx: Context, stats: PeerStats, rating: Connection) -> bool:
    async with ctx.write() as w:
        row = await live_remote_row(w, stats.meeting_id, stats.user_id, stats.session_id)
        if row is None:
            return False
        row.connection = rating.value
        entry = await participant_entry(w, stats.meeting_id, stats.user_id)
        await emit_media_quality(
            w,
            stats.meeting_id,
            session_id=stats.session_id,
            user_id=stats.user_id,
            connection=rating.value,
            rtt_ms=round(stats.rtt_secs * 1000, 1) if stats.rtt_secs is not None else None,
            loss=round(stats.loss, 3) if stats.loss is not None else None,
            participant=entry,
        )
    return True


async def _follow_speaker(ctx: Context, meeting_id: int, user_id: int, *, lost: bool) -> None:
    async with ctx.read() as session:
        holder = await floor_holder(session, meeting_id)
    if holder != user_id:
        return
    if lost:
        await pause_speech(ctx, meeting_id, user_id, "audio_lost")
    else:
        await resume_speech(ctx, meeting_id, user_id)


async def _has_session(ctx: Context, gone: PeerInfo) -> bool:
    """Whether the participant of a dropped session has another one here (rejoined)."""
    engine = runtime(ctx).engine
    if not engine.running:
        # The worker has stopped (the node shuts down): no session is left here.
        return False
    try:
        peers = await engine.peers(gone.meeting_id)
    except RuntimeError:
        return False
    return any(p.user_id == gone.user_id for p in peers)


async def handle_notice(ctx: Context, notice: Notice) -> None:
    """What the worker noticed by itself: a dropped peer, a room closed (recording done)."""
    try:
        if isinstance(notice, PeerGone):
            await _left(ctx, notice.peer, notice.reason, actor_id=None)
            # A dropped speaker keeps the floor for the grace period, its timer stopped
            # (unless they already rejoined).
            peer = notice.peer
            if notice.reason == "shutdown" or not await _has_session(ctx, peer):
                await _follow_speaker(ctx, peer.meeting_id, peer.user_id, lost=True)
        elif isinstance(notice, RoomClosed | RecordingEnded) and notice.recording is not None:
            summary = notice.recording
            async with ctx.write() as w:
                await w.session.execute(
                    update(MediaRecording)
                    .where(MediaRecording.path == _relative(ctx, summary.path))
                    .values(
                        ended_at=w.now,
                        duration_secs=summary.duration_secs,
                        size_bytes=summary.size_bytes,
                        dropped_packets=summary.dropped,
                    )
                )
                await w.audit(
                    None,
                    "media.recorded",
                    meeting_topic(notice.meeting_id),
                    {"path": _relative(ctx, summary.path), "duration_secs": summary.duration_secs},
                )
    except Exception:
        log.exception("recording a media notice failed: %s", notice)


# --- recordings ------------------------------------------------------------------------
def _relative(ctx: Context, path: Path) -> str:
    return str(path.relative_to(ctx.settings.data_dir))


def recording_json(recording: MediaRecording) -> dict[str, Any]:
    """A recording as the API and the minutes show it (the file's path stays private)."""
    return {
        "id": recording.id,
        "meeting_id": recording.meeting_id,
        "started_at": recording.started_at,
        "ended_at": recording.ended_at,
        "duration_secs": recording.duration_secs,
        "size_bytes": recording.size_bytes,
        "format": "audio/ogg",
        "url": f"/api/v1/meetings/{recording.meeting_id}/recordings/{recording.id}",
        # The page a signed-in reader opens to listen (the API path needs the token).
        "page": f"/app/recording/#meeting/{recording.meeting_id}/{recording.id}",
    }


async def list_recordings(session: AsyncSession, meeting_id: int) -> list[dict[str, Any]]:
    """The meeting's floor recordings, oldest first (for the meeting state and minutes)."""
    stmt = (
        select(MediaRecording)
        .where(MediaRecording.meeting_id == meeting_id)
        .order_by(MediaRecording.started_at, MediaRecording.id)
    )
    return [recording_json(r) for r in (await session.execute(stmt)).scalars()]


async def recording_file(
    ctx: Context, principal: Principal, meeting_id: int, recording_id: int
) -> Path:
    """The file of a finished recording, for a participant of the meeting."""
    async with ctx.read() as session:
        await require_meeting(session, meeting_id)
        if (
            await get_participant(session, meeting_id, principal.id) is None
            and not principal.is_admin
        ):
            raise Forbidden(
                f"You do not take part in meeting {meeting_id}.", code="not_a_participant"
            )
        recording = await session.get(MediaRecording, recording_id)
    if recording is None or recording.meeting_id != meeting_id:
        raise NotFound(f"Recording {recording_id} does not exist.", code="recording_not_found")
    if recording.ended_at is None:
        raise Conflict("The recording is still in progress.", code="recording_in_progress")
    return ctx.settings.data_dir / recording.path


async def require_listing_access(
    ctx: Context, principal: Principal, meeting_id: int
) -> list[dict[str, Any]]:
    """The meeting's recordings for a participant (or an administrator); 403 otherwise."""
    async with ctx.read() as session:
        await require_meeting(session, meeting_id)
        if (
            await get_participant(session, meeting_id, principal.id) is None
            and not principal.is_admin
        ):
            raise Forbidden(
                f"You do not take part in meeting {meeting_id}.", code="not_a_participant"
            )
        return await list_recordings(session, meeting_id)
