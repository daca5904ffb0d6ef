"""The list of speakers: requests for the floor, the floor itself, and the speech timer.

Delegates request the floor (a point of order goes to the front, behind earlier points of
order) and may withdraw; the chair grants, finishes and reorders. At most one speech runs
at a time. Every speaker event carries the whole ``speakers`` part of the meeting state
(queue, current speech, totals), so tablets replace it instead of patching it.

The timer runs on the server: when the floor is given the speech's end is fixed in the
database (``granted_at + limit_secs``). ``SpeechTimers`` sleeps on the injected clock until
the warning and the end, then sends ``speaker.warning`` and ``speaker.time_up``; each is
marked in the row so it goes out once, even with several nodes or after a restart (the
timers are rebuilt from the speeches still running in the database).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from meeting.events import (
    emit_speaker_finished,
    emit_speaker_granted,
    emit_speaker_paused,
    emit_speaker_requested,
    emit_speaker_resumed,
    emit_speaker_started,
    emit_speaker_time_up,
    emit_speaker_warning,
    emit_speaker_withdrawn,
    emit_speakers_reordered,
)
from meeting.models import (
    CHAIR_ROLES,
    Meeting,
    ParticipantRole,
    Speaker,
    SpeakerKind,
    SpeakerState,
)
from meeting.participants import (
    meeting_subject,
    require_in_session,
    require_open,
    require_role,
    require_visible,
)
from server.auth.principal import Principal
from server.clock import utc_iso
from server.context import Context, Write
from server.errors import Conflict, NotFound, Unprocessable
from server.org.models import User

log = logging.getLogger("dienhong.meeting.speakers")

# Who may ask for the floor: members of the body and invited guests, not secretaries.
SPEAKING_ROLES = frozenset({ParticipantRole.CHAIR, ParticipantRole.DELEGATE, ParticipantRole.GUEST})


def speech_end(speaker: Speaker) -> datetime | None:
    """When the speech's time runs out: its limit after the grant, plus the time it stood
    still (while paused, as if it resumed at the moment it paused)."""
    if speaker.granted_at is None or speaker.limit_secs is None:
        return None
    return speaker.granted_at + timedelta(seconds=speaker.limit_secs + (speaker.paused_secs or 0))


def spoken_secs(speaker: Speaker, now: datetime) -> float:
    """Seconds the speaker has spoken, the pauses left out."""
    assert speaker.granted_at is not None
    until = speaker.paused_at or now
    return max(0.0, (until - speaker.granted_at).total_seconds() - (speaker.paused_secs or 0))


def speaker_json(speaker: Speaker, name: str) -> dict[str, Any]:
    end = speech_end(speaker)
    return {
        "id": speaker.id,
        "user_id": speaker.user_id,
        "display_name": name,
        "kind": speaker.kind,
        "state": speaker.state,
        "agenda_item_id": speaker.agenda_item_id,
        "requested_at": utc_iso(speaker.requested_at),
        "granted_at": utc_iso(speaker.granted_at) if speaker.granted_at else None,
        "limit_secs": speaker.limit_secs,
        "ends_at": utc_iso(end) if end else None,
        "warned": speaker.warned_at is not None,
        "time_up": speaker.time_up_at is not None,
        "finished_at": utc_iso(speaker.finished_at) if speaker.finished_at else None,
        "duration_secs": speaker.duration_secs,
        "paused": speaker.paused_at is not None,
        "paused_at": utc_iso(speaker.paused_at) if speaker.paused_at else None,
        # While paused: what is left of the speech's time (the timer stands still).
        "remaining_secs": round(max(0.0, (end - speaker.paused_at).total_seconds()), 3)
        if end and speaker.paused_at
        else None,
    }


async def speakers_json(session: AsyncSession, meeting_id: int) -> dict[str, Any]:
    """The queue (in order), the running speech, and per-delegate totals of finished ones."""
    rows = (
        await session.execute(
            select(Speaker, User.display_name)
            .join(User, User.id == Speaker.user_id)
            .where(
                Speaker.meeting_id == meeting_id,
                Speaker.state.in_([SpeakerState.WAITING.value, SpeakerState.SPEAKING.value]),
            )
            .order_by(Speaker.position, Speaker.id)
        )
    ).all()
    queue = [speaker_json(s, name) for s, name in rows if s.state == SpeakerState.WAITING]
    current = next(
        (speaker_json(s, name) for s, name in rows if s.state == SpeakerState.SPEAKING), None
    )
    totals = (
        await session.execute(
            select(Speaker.user_id, func.count(), func.sum(Speaker.duration_secs))
            .where(Speaker.meeting_id == meeting_id, Speaker.state == SpeakerState.FINISHED.value)
            .group_by(Speaker.user_id)
            .order_by(Speaker.user_id)
        )
    ).all()
    return {
        "queue": queue,
        "current": current,
        "totals": [
            {"user_id": uid, "speeches": int(n), "seconds": round(float(secs or 0), 3)}
            for uid, n, secs in totals
        ],
    }


async def floor_holder(session: AsyncSession, meeting_id: int) -> int | None:
    """The user id of whoever holds the floor right now, or None."""
    stmt = select(Speaker.user_id).where(
        Speaker.meeting_id == meeting_id, Speaker.state == SpeakerState.SPEAKING.value
    )
    return (await session.execute(stmt.limit(1))).scalar_one_or_none()


async def _waiting(session: AsyncSession, meeting_id: int) -> list[Speaker]:
    return list(
        (
            await session.execute(
                select(Speaker)
                .where(
                    Speaker.meeting_id == meeting_id, Speaker.state == SpeakerState.WAITING.value
                )
                .order_by(Speaker.position, Speaker.id)
            )
        ).scalars()
    )


def _renumber(queue: Sequence[Speaker]) -> None:
    for index, speaker in enumerate(queue):
        speaker.position = float(index)


async def _require_speaker(session: AsyncSession, meeting_id: int, speaker_id: int) -> Speaker:
    speaker = await session.get(Speaker, speaker_id)
    if speaker is None or speaker.meeting_id != meeting_id:
        raise NotFound(
            f"Meeting {meeting_id} has no speaker request {speaker_id}.", code="speaker_not_found"
        )
    return speaker


async def _emit(
    w: Write,
    meeting_id: int,
    builder: Callable[..., Awaitable[Any]],
    speaker: Speaker | None,
    **extra: Any,
) -> None:
    """Emit a speaker event through its builder, with the queue as it is now."""
    await w.session.flush()
    speakers = await speakers_json(w.session, meeting_id)
    if speaker is not None:
        extra.update(speaker_id=speaker.id, user_id=speaker.user_id, kind=speaker.kind)
    await builder(w, meeting_id, speakers=speakers, **extra)


async def request_floor(
    ctx: Context, actor: Principal, meeting_id: int, kind: SpeakerKind
) -> dict[str, Any]:
    """Ask for the floor; a point of order goes to the front of the queue.

    409 ``already_requested`` when the delegate already waits with a request of that kind.
    """
    async with ctx.write() as w:
        meeting = await require_visible(w.session, meeting_id, actor, lock=True)
        await require_role(w.session, meeting, actor, SPEAKING_ROLES, "ask for the floor")
        require_open(meeting)
        queue = await _waiting(w.session, meeting_id)
        if any(s.user_id == actor.id and s.kind == kind.value for s in queue):
            raise Conflict(
                "You are already waiting for the floor with such a request.",
                code="already_requested",
            )
        if len(queue) >= ctx.settings.meeting_max_waiting_speakers:
            raise Conflict("The list of speakers is full.", code="queue_full")
        speaker = Speaker(
            meeting_id=meeting_id,
            user_id=actor.id,
            kind=kind.value,
            state=SpeakerState.WAITING.value,
            position=float(len(queue)),
            agenda_item_id=meeting.current_agenda_item_id,
            requested_at=w.now,
        )
        w.session.add(speaker)
        if kind is SpeakerKind.POINT_OF_ORDER:
            front = 0
            while front < len(queue) and queue[front].kind == SpeakerKind.POINT_OF_ORDER:
                front += 1
            queue.insert(front, speaker)
        else:
            queue.append(speaker)
        _renumber(queue)
        await w.session.flush()
        await w.audit(
            actor.id,
            "meeting.speaker.request",
            meeting_subject(meeting_id),
            {"speaker_id": speaker.id, "kind": kind.value},
        )
        await _emit(w, meeting_id, emit_speaker_requested, speaker)
        result = speaker_json(speaker, actor.display_name)
    return result


async def withdraw(ctx: Context, actor: Principal, meeting_id: int, speaker_id: int) -> None:
    """Take a waiting request off the list: its owner, or the chair."""
    async with ctx.write() as w:
        meeting = await require_visible(w.session, meeting_id, actor, lock=True)
        speaker = await _require_speaker(w.session, meeting_id, speaker_id)
        if speaker.user_id != actor.id:
            await require_role(
                w.session, meeting, actor, CHAIR_ROLES, "remove someone else's request"
            )
        require_open(meeting)
        if not speaker.speaker_state.may_become(SpeakerState.WITHDRAWN):
            raise Conflict(
                f"Request {speaker_id} is {speaker.state}, not waiting.", code="speaker_not_waiting"
            )
        speaker.state = SpeakerState.WITHDRAWN.value
        speaker.finished_at = w.now
        speaker.finished_by = actor.id
        _renumber(await _waiting(w.session, meeting_id))
        await w.audit(
            actor.id,
            "meeting.speaker.withdraw",
            meeting_subject(meeting_id),
            {"speaker_id": speaker.id, "user_id": speaker.user_id},
        )
        await _emit(w, meeting_id, emit_speaker_withdrawn, speaker)


async def grant(ctx: Context, actor: Principal, meeting_id: int, speaker_id: int) -> dict[str, Any]:
    """Give the floor to a waiting request; chair only, only in session.

    409 ``floor_taken`` while someone else speaks, ``speaker_not_waiting`` for a request
    that was already granted, finished or withdrawn. Sends ``speaker.granted`` and
    ``speaker.started`` (with the speech's end), and starts the timer.
    """
    async with ctx.write() as w:
        meeting = await require_visible(w.session, meeting_id, actor, lock=True)
        await require_role(w.session, meeting, actor, CHAIR_ROLES, "give the floor")
        require_in_session(meeting)
        speaker = await _require_speaker(w.session, meeting_id, speaker_id)
        if not speaker.speaker_state.may_become(SpeakerState.SPEAKING):
            raise Conflict(
                f"Request {speaker_id} is {speaker.state}, not waiting.", code="speaker_not_waiting"
            )
        holder = await floor_holder(w.session, meeting_id)
        if holder is not None:
            raise Conflict(
                f"User {holder} has the floor; finish that speech first.",
                code="floor_taken",
                details={"user_id": holder},
            )
        speaker.state = SpeakerState.SPEAKING.value
        speaker.granted_at = w.now
        speaker.granted_by = actor.id
        speaker.limit_secs = meeting.speech_limit_secs
        _renumber(await _waiting(w.session, meeting_id))
        end = speech_end(speaker)
        assert end is not None
        await w.audit(
            actor.id,
            "meeting.speaker.grant",
            meeting_subject(meeting_id),
            {
                "speaker_id": speaker.id,
                "user_id": speaker.user_id,
                "kind": speaker.kind,
                "limit_secs": speaker.limit_secs,
            },
        )
        await _emit(w, meeting_id, emit_speaker_granted, speaker)
        await _emit(
            w,
            meeting_id,
            emit_speaker_started,
            speaker,
            started_at=utc_iso(w.now),
            ends_at=utc_iso(end),
            limit_secs=speaker.limit_secs,
        )
        timers = speech_timers(ctx)
        speaker_ref = (speaker.id, meeting_id, end, speaker.limit_secs)
        w.after_commit(lambda: timers.schedule(*speaker_ref))
        user = await w.session.get(User, speaker.user_id)
        result = speaker_json(speaker, user.display_name if user else "")
    return result


async def end_speech(w: Write, meeting: Meeting, speaker: Speaker, actor_id: int | None) -> None:
    """Finish a running speech inside the caller's write (finish, adjourn, close)."""
    assert speaker.granted_at is not None
    speaker.state = SpeakerState.FINISHED.value
    speaker.finished_at = w.now
    speaker.finished_by = actor_id
    speaker.duration_secs = round(spoken_secs(speaker, w.now), 3)
    if speaker.paused_at is not None:
        speaker.paused_secs = (speaker.paused_secs or 0) + (
            w.now - speaker.paused_at
        ).total_seconds()
        speaker.paused_at = None
    await w.audit(
        actor_id,
        "meeting.speaker.finish",
        meeting_subject(meeting.id),
        {
            "speaker_id": speaker.id,
            "user_id": speaker.user_id,
            "kind": speaker.kind,
            "granted_at": utc_iso(speaker.granted_at),
            "finished_at": utc_iso(w.now),
            "duration_secs": speaker.duration_secs,
        },
    )
    await _emit(w, meeting.id, emit_speaker_finished, speaker, duration_secs=speaker.duration_secs)


async def finish_running_speech(w: Write, meeting: Meeting, actor_id: int | None) -> None:
    """End whatever speech runs (used when the session is adjourned or closed)."""
    running = (
        (
            await w.session.execute(
                select(Speaker).where(
                    Speaker.meeting_id == meeting.id, Speaker.state == SpeakerState.SPEAKING.value
                )
            )
        )
        .scalars()
        .all()
    )
    for speaker in running:
        await end_speech(w, meeting, speaker, actor_id)


async def finish(ctx: Context, actor: Principal, meeting_id: int, speaker_id: int) -> None:
    """End a speech: the chair, or the speaker itself. 409 ``speaker_not_speaking``."""
    async with ctx.write() as w:
        meeting = await require_visible(w.session, meeting_id, actor, lock=True)
        speaker = await _require_speaker(w.session, meeting_id, speaker_id)
        if speaker.user_id != actor.id:
            await require_role(w.session, meeting, actor, CHAIR_ROLES, "end a speech")
        require_open(meeting)
        if not speaker.speaker_state.may_become(SpeakerState.FINISHED):
            raise Conflict(
                f"Request {speaker_id} is {speaker.state}, not speaking.",
                code="speaker_not_speaking",
            )
        await end_speech(w, meeting, speaker, actor.id)
    speech_timers(ctx).cancel(speaker_id)


async def _running_speech(w: Write, meeting_id: int, user_id: int) -> Speaker | None:
    """The user's running speech, read under the meeting's lock."""
    if await w.session.get(Meeting, meeting_id, with_for_update=True) is None:
        return None
    return (
        (
            await w.session.execute(
                select(Speaker).where(
                    Speaker.meeting_id == meeting_id,
                    Speaker.user_id == user_id,
                    Speaker.state == SpeakerState.SPEAKING.value,
                )
            )
        )
        .scalars()
        .first()
    )


async def pause_speech(ctx: Context, meeting_id: int, user_id: int, reason: str) -> bool:
    """Stop the timer of the user's running speech (their remote audio was lost).

    Sends ``speaker.paused``; returns False when the user does not speak or is paused."""
    async with ctx.write() as w:
        speaker = await _running_speech(w, meeting_id, user_id)
        if speaker is None or speaker.paused_at is not None:
            return False
        speaker.paused_at = w.now
        await w.audit(
            None,
            "meeting.speaker.pause",
            meeting_subject(meeting_id),
            {"speaker_id": speaker.id, "user_id": user_id, "reason": reason},
        )
        await _emit(w, meeting_id, emit_speaker_paused, speaker, reason=reason)
        speaker_id = speaker.id
    speech_timers(ctx).cancel(speaker_id)
    return True


async def resume_speech(ctx: Context, meeting_id: int, user_id: int) -> bool:
    """Let the timer of the user's paused speech run again, its end moved by the pause.

    Sends ``speaker.resumed`` with the new end; False when there is no paused speech."""
    async with ctx.write() as w:
        speaker = await _running_speech(w, meeting_id, user_id)
        if speaker is None or speaker.paused_at is None:
            return False
        stood_still = (w.now - speaker.paused_at).total_seconds()
        speaker.paused_secs = (speaker.paused_secs or 0) + stood_still
        speaker.paused_at = None
        end = speech_end(speaker)
        assert end is not None
        await w.audit(
            None,
            "meeting.speaker.resume",
            meeting_subject(meeting_id),
            {"speaker_id": speaker.id, "user_id": user_id, "paused_secs": round(stood_still, 3)},
        )
        await _emit(w, meeting_id, emit_speaker_resumed, speaker, ends_at=utc_iso(end))
        timers = speech_timers(ctx)
        speaker_ref = (speaker.id, meeting_id, end, speaker.limit_secs)
        w.after_commit(lambda: timers.schedule(*speaker_ref))
    return True


async def finish_paused_speeches(ctx: Context, older_than: datetime) -> list[int]:
    """End every speech paused since before ``older_than`` (its speaker did not come back
    within the grace period: the floor is free again). Returns the speakers' user ids."""
    async with ctx.read() as session:
        stale = (
            await session.execute(
                select(Speaker.id, Speaker.meeting_id).where(
                    Speaker.state == SpeakerState.SPEAKING.value,
                    Speaker.paused_at.is_not(None),
                    Speaker.paused_at < older_than,
                )
            )
        ).all()
    ended = []
    for speaker_id, meeting_id in stale:
        async with ctx.write() as w:
            meeting = await w.session.get(Meeting, meeting_id, with_for_update=True)
            speaker = await w.session.get(Speaker, speaker_id)
            if meeting is None or speaker is None:
                continue
            await w.session.refresh(speaker)
            if (
                speaker.state != SpeakerState.SPEAKING.value
                or speaker.paused_at is None
                or speaker.paused_at >= older_than
            ):
                continue
            await end_speech(w, meeting, speaker, None)
            ended.append(speaker.user_id)
        speech_timers(ctx).cancel(speaker_id)
    return ended


async def reorder(
    ctx: Context, actor: Principal, meeting_id: int, speaker_ids: Sequence[int]
) -> dict[str, Any]:
    """Put the waiting requests in the given order; chair only.

    422 ``queue_mismatch`` unless ``speaker_ids`` names every waiting request exactly once.
    """
    async with ctx.write() as w:
        meeting = await require_visible(w.session, meeting_id, actor, lock=True)
        await require_role(w.session, meeting, actor, CHAIR_ROLES, "reorder the speakers")
        require_open(meeting)
        queue = await _waiting(w.session, meeting_id)
        by_id = {s.id: s for s in queue}
        if len(speaker_ids) != len(set(speaker_ids)) or set(speaker_ids) != set(by_id):
            raise Unprocessable(
                "List every waiting request exactly once.",
                code="queue_mismatch",
                details={"expected": sorted(by_id)},
            )
        _renumber([by_id[sid] for sid in speaker_ids])
        await w.audit(
            actor.id,
            "meeting.speaker.reorder",
            meeting_subject(meeting_id),
            {"speaker_ids": list(speaker_ids)},
        )
        await _emit(w, meeting_id, emit_speakers_reordered, None)
        result = await speakers_json(w.session, meeting_id)
    return result


# --- the speech timer ----------------------------------------------------------------


async def _mark(ctx: Context, speaker_id: int, what: str) -> None:
    """Send ``speaker.warning`` or ``speaker.time_up`` once, if the speech still runs."""
    async with ctx.write() as w:
        speaker = await w.session.get(Speaker, speaker_id)
        if speaker is None:
            return
        meeting = await w.session.get(Meeting, speaker.meeting_id, with_for_update=True)
        # Re-read under the meeting's lock: another node may have done it meanwhile.
        await w.session.refresh(speaker)
        if (
            meeting is None
            or speaker.state != SpeakerState.SPEAKING.value
            or speaker.paused_at is not None
        ):
            return
        end = speech_end(speaker)
        assert end is not None
        if w.now < end - timedelta(
            seconds=ctx.settings.speech_warning_secs if what == "warning" else 0
        ):
            # The speech was paused and resumed meanwhile: its timer was set again.
            return
        if what == "warning":
            if speaker.warned_at is not None or speaker.time_up_at is not None:
                return
            speaker.warned_at = w.now
            remaining = max(0.0, (end - w.now).total_seconds())
            await _emit(
                w,
                meeting.id,
                emit_speaker_warning,
                speaker,
                remaining_secs=round(remaining, 3),
                ends_at=utc_iso(end),
            )
        else:
            if speaker.time_up_at is not None:
                return
            speaker.time_up_at = w.now
            await w.audit(
                None,
                "meeting.speaker.time_up",
                meeting_subject(meeting.id),
                {
                    "speaker_id": speaker.id,
                    "user_id": speaker.user_id,
                    "limit_secs": speaker.limit_secs,
                },
            )
            await _emit(w, meeting.id, emit_speaker_time_up, speaker, ends_at=utc_iso(end))


class SpeechTimers:
    """One task per running speech on this node, sleeping on the injected clock."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.tasks: dict[int, asyncio.Task[None]] = {}

    def schedule(
        self, speaker_id: int, meeting_id: int, end: datetime | None, limit_secs: int | None
    ) -> None:
        if speaker_id in self.tasks or end is None or limit_secs is None:
            return
        warn_secs = self.ctx.settings.speech_warning_secs
        warn_at = end - timedelta(seconds=warn_secs) if limit_secs > warn_secs else None
        task = asyncio.create_task(
            self._run(speaker_id, warn_at, end), name=f"speech-timer-{meeting_id}-{speaker_id}"
        )
        self.tasks[speaker_id] = task
        task.add_done_callback(lambda _t: self.tasks.pop(speaker_id, None))

    def cancel(self, speaker_id: int) -> None:
        task = self.tasks.pop(speaker_id, None)
        if task is not None:
            task.cancel()

    async def _run(self, speaker_id: int, warn_at: datetime | None, end: datetime) -> None:
        try:
            if warn_at is not None:
                await self.ctx.clock.sleep_until(warn_at)
                await _mark(self.ctx, speaker_id, "warning")
            await self.ctx.clock.sleep_until(end)
            await _mark(self.ctx, speaker_id, "time_up")
        except asyncio.CancelledError:
            raise
        except Exception:
            # The rescan picks the speech up again; the marks make retries harmless.
            log.exception("speech timer of speaker %s failed", speaker_id)

    async def rescan(self) -> None:
        """Time every speech the database says is running (after a restart, or elsewhere)."""
        async with self.ctx.read() as session:
            rows = (
                (
                    await session.execute(
                        select(Speaker).where(
                            Speaker.state == SpeakerState.SPEAKING.value,
                            Speaker.time_up_at.is_(None),
                            Speaker.paused_at.is_(None),
                        )
                    )
                )
                .scalars()
                .all()
            )
        for speaker in rows:
            self.schedule(speaker.id, speaker.meeting_id, speech_end(speaker), speaker.limit_secs)

    async def close(self) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def speech_timers(ctx: Context) -> SpeechTimers:
    """This node's speech timers."""
    return ctx.runtimes.setdefault(SpeechTimers, lambda: SpeechTimers(ctx))


async def run_speech_timers(ctx: Context) -> None:
    """Background task: rebuild the timers from the database, then keep looking."""
    timers = speech_timers(ctx)
    try:
        while True:
            try:
                await timers.rescan()
            except Exception:
                log.exception("looking for running speeches failed")
            # A poll interval (wall time), not a deadline: deadlines use the clock.
            await asyncio.sleep(ctx.settings.speech_timer_rescan_secs)
    finally:
        await timers.close()
