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
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from meeting.events import emit_media_joined, emit_media_left
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
from meeting.models import OFFICER_ROLES, MeetingState, Participant, ParticipantRole
from meeting.service import floor_holder, get_participant, meeting_topic, require_meeting
from server.auth.principal import Principal
from server.context import Context
from server.errors import BadRequest, Conflict, Forbidden, NotFound
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
    """Background task: follow the floor; at shutdown stop the worker."""
    state = runtime(ctx)
    try:
        while True:
            await asyncio.sleep(ctx.settings.media_floor_poll_secs)
            try:
                await follow_floor(ctx)
            except Exception:
                log.exception("following the floor failed")
    finally:
        await state.engine.stop()
        if state.pending:
            await asyncio.gather(*state.pending, return_exceptions=True)


# --- the floor ----------------------------------------------------------------------------
async def current_floor(session: AsyncSession, meeting_id: int) -> Floor:
    """Everyone hears the chairs and the delegate holding the floor, and sees the latter."""
    stmt = select(Participant.user_id).where(Participant.meeting_id == meeting_id,
                                             Participant.role == ParticipantRole.CHAIR.value)
    users = {int(uid) for uid in (await session.execute(stmt)).scalars()}
    holder = await floor_holder(session, meeting_id)
    if holder is not None:
        users.add(holder)
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
def may_join_as(kind: JoinKind, participant: Participant | None,
                principal: Principal) -> str | None:
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


async def do_join(ctx: Context, principal: Principal, meeting_id: int,
                  sdp: str, kind: JoinKind = "participant") -> dict[str, Any]:
    """Answer an SDP offer of ``kind`` and announce ``media.joined`` on the meeting."""
    async with ctx.read() as session:
        meeting = await require_meeting(session, meeting_id)
        participant = await get_participant(session, meeting_id, principal.id)
        refused = may_join_as(kind, participant, principal)
        if refused == "not_a_participant":
            raise Forbidden(f"You do not take part in meeting {meeting_id}.",
                            code="not_a_participant")
        if refused is not None:
            raise Forbidden("Only the meeting's chair or secretary (or an administrator) may "
                            "connect the hall's sound desk.", code=refused)
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
            if joined.recording_path is not None:
                w.session.add(MediaRecording(
                    meeting_id=meeting_id, path=_relative(ctx, joined.recording_path),
                    started_by=principal.id, started_at=w.now, dropped_packets=0,
                ))
            await emit_media_joined(w, meeting_id, session_id=session_id,
                                    user_id=principal.id,
                                    role=participant.role if participant else "admin",
                                    kind=kind)
            await w.audit(principal.id, "media.join", meeting_topic(meeting_id),
                          {"session_id": session_id, "kind": kind})
    except BaseException:
        await state.engine.leave(session_id)
        raise
    return {"sdp": joined.answer_sdp, "type": "answer", "session_id": session_id}


async def do_leave(ctx: Context, principal: Principal, meeting_id: int,
                   session_id: str) -> None:
    """End one's own media session (``media.left`` with reason ``left``)."""
    state = runtime(ctx)
    peers = await state.engine.peers(meeting_id)
    peer = next((p for p in peers if p.session_id == session_id), None)
    if peer is None or peer.user_id != principal.id:
        raise NotFound(f"No media session {session_id!r} of yours in meeting {meeting_id}.",
                       code="media_session_not_found")
    left = await state.engine.leave(session_id)
    if left is not None:
        await _left(ctx, left, "left", actor_id=principal.id)


async def _left(ctx: Context, peer: PeerInfo, reason: str, *, actor_id: int | None) -> None:
    async with ctx.write() as w:
        await emit_media_left(w, peer.meeting_id, session_id=peer.session_id,
                              user_id=peer.user_id, reason=reason)
        await w.audit(actor_id, "media.leave", meeting_topic(peer.meeting_id),
                      {"session_id": peer.session_id, "user_id": peer.user_id,
                       "reason": reason})


async def handle_notice(ctx: Context, notice: Notice) -> None:
    """What the worker noticed by itself: a dropped peer, a room closed (recording done)."""
    try:
        if isinstance(notice, PeerGone):
            await _left(ctx, notice.peer, notice.reason, actor_id=None)
        elif (isinstance(notice, RoomClosed | RecordingEnded)
              and notice.recording is not None):
            summary = notice.recording
            async with ctx.write() as w:
                await w.session.execute(
                    update(MediaRecording)
                    .where(MediaRecording.path == _relative(ctx, summary.path))
                    .values(ended_at=w.now, duration_secs=summary.duration_secs,
                            size_bytes=summary.size_bytes,
                            dropped_packets=summary.dropped)
                )
                await w.audit(None, "media.recorded", meeting_topic(notice.meeting_id),
                              {"path": _relative(ctx, summary.path),
                               "duration_secs": summary.duration_secs})
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
    }


async def list_recordings(session: AsyncSession, meeting_id: int) -> list[dict[str, Any]]:
    """The meeting's floor recordings, oldest first (for the meeting state and minutes)."""
    stmt = (select(MediaRecording).where(MediaRecording.meeting_id == meeting_id)
            .order_by(MediaRecording.started_at, MediaRecording.id))
    return [recording_json(r) for r in (await session.execute(stmt)).scalars()]


async def recording_file(ctx: Context, principal: Principal, meeting_id: int,
                         recording_id: int) -> Path:
    """The file of a finished recording, for a participant of the meeting."""
    async with ctx.read() as session:
        await require_meeting(session, meeting_id)
        if (await get_participant(session, meeting_id, principal.id) is None
                and not principal.is_admin):
            raise Forbidden(f"You do not take part in meeting {meeting_id}.",
                            code="not_a_participant")
        recording = await session.get(MediaRecording, recording_id)
    if recording is None or recording.meeting_id != meeting_id:
        raise NotFound(f"Recording {recording_id} does not exist.",
                       code="recording_not_found")
    if recording.ended_at is None:
        raise Conflict("The recording is still in progress.", code="recording_in_progress")
    return ctx.settings.data_dir / recording.path


async def require_listing_access(ctx: Context, principal: Principal,
                                 meeting_id: int) -> list[dict[str, Any]]:
    """The meeting's recordings for a participant (or an administrator); 403 otherwise."""
    async with ctx.read() as session:
        await require_meeting(session, meeting_id)
        if (await get_participant(session, meeting_id, principal.id) is None
                and not principal.is_admin):
            raise Forbidden(f"You do not take part in meeting {meeting_id}.",
                            code="not_a_participant")
        return await list_recordings(session, meeting_id)
