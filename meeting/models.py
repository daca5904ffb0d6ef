"""Council sessions: meetings, participants, attendance, agenda, speakers, annotations.

A ``Meeting`` is the one row every change of a session locks (``SELECT … FOR UPDATE``
through ``require_meeting(..., lock=True)``), so checks such as "nobody holds the floor"
and the change that follows them never race on PostgreSQL; SQLite has one writer anyway.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, UTCDateTime

# Longest meeting or agenda item title, place and absence reason kept.
MAX_TITLE_CHARS = 300
MAX_PLACE_CHARS = 300
MAX_REASON_CHARS = 500


class MeetingState(enum.StrEnum):
    """Lifecycle of a session: scheduled → in_session ⇄ adjourned → closed (read-only)."""

    SCHEDULED = "scheduled"
    IN_SESSION = "in_session"
    ADJOURNED = "adjourned"
    CLOSED = "closed"

    def may_become(self, target: MeetingState) -> bool:
        return target in _MEETING_TRANSITIONS[self]

    @property
    def is_open(self) -> bool:
        """Anything but closed may still be changed."""
        return self is not MeetingState.CLOSED


_MEETING_TRANSITIONS: dict[MeetingState, frozenset[MeetingState]] = {
    MeetingState.SCHEDULED: frozenset({MeetingState.IN_SESSION, MeetingState.CLOSED}),
    MeetingState.IN_SESSION: frozenset({MeetingState.ADJOURNED, MeetingState.CLOSED}),
    MeetingState.ADJOURNED: frozenset({MeetingState.IN_SESSION, MeetingState.CLOSED}),
    MeetingState.CLOSED: frozenset(),
}


class ParticipantRole(enum.StrEnum):
    CHAIR = "chair"
    SECRETARY = "secretary"
    DELEGATE = "delegate"
    # Invited without a vote: never counts towards quorum or a majority.
    GUEST = "guest"


# The members of the body: those counted for quorum and for "all delegates" majorities.
MEMBER_ROLES = frozenset({ParticipantRole.CHAIR, ParticipantRole.DELEGATE})
CHAIR_ROLES = frozenset({ParticipantRole.CHAIR})
# Those who run the session: agenda, attendance of others.
OFFICER_ROLES = frozenset({ParticipantRole.CHAIR, ParticipantRole.SECRETARY})


class AttendanceMode(enum.StrEnum):
    HALL = "hall"
    REMOTE = "remote"


class SpeakerKind(enum.StrEnum):
    SPEECH = "speech"
    QUESTION = "question"
    # Goes to the front of the queue (behind earlier points of order).
    POINT_OF_ORDER = "point_of_order"


class SpeakerState(enum.StrEnum):
    """waiting → speaking → finished; waiting → withdrawn."""

    WAITING = "waiting"
    SPEAKING = "speaking"
    FINISHED = "finished"
    WITHDRAWN = "withdrawn"

    def may_become(self, target: SpeakerState) -> bool:
        return target in _SPEAKER_TRANSITIONS[self]


_SPEAKER_TRANSITIONS: dict[SpeakerState, frozenset[SpeakerState]] = {
    SpeakerState.WAITING: frozenset({SpeakerState.SPEAKING, SpeakerState.WITHDRAWN}),
    SpeakerState.SPEAKING: frozenset({SpeakerState.FINISHED}),
    SpeakerState.FINISHED: frozenset(),
    SpeakerState.WITHDRAWN: frozenset(),
}


class AnnotationKind(enum.StrEnum):
    INK = "ink"
    HIGHLIGHT = "highlight"
    NOTE = "note"


class Meeting(Base):
    __tablename__ = "meetings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(MAX_TITLE_CHARS))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    place: Mapped[str] = mapped_column(String(MAX_PLACE_CHARS), default="")
    state: Mapped[str] = mapped_column(String(16), default=MeetingState.SCHEDULED.value)
    # Quorum: at least numerator/denominator of all members present (default two thirds).
    quorum_numerator: Mapped[int] = mapped_column(Integer, default=2)
    quorum_denominator: Mapped[int] = mapped_column(Integer, default=3)
    # Whether delegates attending remotely (over the media feature) count toward the quorum.
    remote_counts_for_quorum: Mapped[bool] = mapped_column(Boolean, default=True)
    speech_limit_secs: Mapped[int] = mapped_column(Integer, default=300)
    current_agenda_item_id: Mapped[int | None] = mapped_column(Integer, default=None)
    # Someone the chair lets drive the presentation besides the chairs.
    presenter_id: Mapped[int | None] = mapped_column(Integer, default=None)
    # What every tablet in follow mode shows.
    presented_item_id: Mapped[int | None] = mapped_column(Integer, default=None)
    presented_document_id: Mapped[int | None] = mapped_column(Integer, default=None)
    presented_page: Mapped[int | None] = mapped_column(Integer, default=None)
    presented_by: Mapped[int | None] = mapped_column(Integer, default=None)
    presented_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # When the agenda was last sent to the participants (None: never published).
    agenda_published_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    @property
    def lifecycle(self) -> MeetingState:
        return MeetingState(self.state)


class Participant(Base):
    __tablename__ = "meeting_participants"
    __table_args__ = (UniqueConstraint("meeting_id", "user_id", name="uq_participant"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    meeting_id: Mapped[int] = mapped_column(
        ForeignKey("meetings.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    role: Mapped[str] = mapped_column(String(16))

    @property
    def participant_role(self) -> ParticipantRole:
        return ParticipantRole(self.role)


class Attendance(Base):
    """One row per participant once anyone recorded their presence or absence."""

    __tablename__ = "meeting_attendance"
    __table_args__ = (UniqueConstraint("meeting_id", "user_id", name="uq_attendance"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    meeting_id: Mapped[int] = mapped_column(
        ForeignKey("meetings.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    present: Mapped[bool] = mapped_column(Boolean, default=False)
    # First check-in of the session (kept when a delegate leaves and comes back).
    checked_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    absent_reason: Mapped[str] = mapped_column(String(MAX_REASON_CHARS), default="")
    # Who recorded the latest change (the delegate itself on check-in).
    marked_by: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # In the hall, or remote (checked in by joining the sitting's media).
    mode: Mapped[str] = mapped_column(String(8), default=AttendanceMode.HALL.value)
    # The remote participant's live media session, its connection quality (good, fair,
    # poor, lost), and the chair's controls over it; all empty when not connected.
    media_session_id: Mapped[str | None] = mapped_column(String(64), default=None)
    connection: Mapped[str | None] = mapped_column(String(8), default=None)
    # Who muted the remote microphone (the participant itself or a chair), if muted.
    muted_by: Mapped[int | None] = mapped_column(Integer, default=None)
    unmute_requested: Mapped[bool] = mapped_column(Boolean, default=False)


class AgendaItem(Base):
    __tablename__ = "agenda_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    meeting_id: Mapped[int] = mapped_column(
        ForeignKey("meetings.id", ondelete="CASCADE"), index=True
    )
    # Sub-items point at their parent item; the top level has none.
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("agenda_items.id", ondelete="CASCADE"), default=None
    )
    # Order among the siblings, 0-based and gapless.
    position: Mapped[int] = mapped_column(Integer, default=0)
    title: Mapped[str] = mapped_column(String(MAX_TITLE_CHARS))
    planned_minutes: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AgendaDocument(Base):
    """A file attached to an agenda item (what participants may read)."""

    __tablename__ = "agenda_documents"
    __table_args__ = (UniqueConstraint("item_id", "file_id", name="uq_agenda_document"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(
        ForeignKey("agenda_items.id", ondelete="CASCADE"), index=True
    )
    meeting_id: Mapped[int] = mapped_column(
        ForeignKey("meetings.id", ondelete="CASCADE"), index=True
    )
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id", ondelete="RESTRICT"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)


class Speaker(Base):
    """One request for the floor, from the queue to the end of the speech."""

    __tablename__ = "meeting_speakers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    meeting_id: Mapped[int] = mapped_column(
        ForeignKey("meetings.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default=SpeakerState.WAITING.value, index=True)
    # Order in the queue among waiting requests (smaller first; fractional on reorder).
    position: Mapped[float] = mapped_column(Float, default=0.0)
    agenda_item_id: Mapped[int | None] = mapped_column(Integer, default=None)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    granted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    granted_by: Mapped[int | None] = mapped_column(Integer, default=None)
    # The limit in force when the floor was given.
    limit_secs: Mapped[int | None] = mapped_column(Integer, default=None)
    # Set once the "30 s left" and "time is up" events went out (a restart sends neither twice).
    warned_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    time_up_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    finished_by: Mapped[int | None] = mapped_column(Integer, default=None)
    duration_secs: Mapped[float | None] = mapped_column(Float, default=None)
    # The speech timer stands still while the remote speaker's audio is lost: since when,
    # and the seconds it stood still before (they extend the speech's end).
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    paused_secs: Mapped[float] = mapped_column(Float, default=0.0)

    @property
    def speaker_state(self) -> SpeakerState:
        return SpeakerState(self.state)


class Annotation(Base):
    """A reader's mark on one page of a document: private unless shared with a meeting."""

    __tablename__ = "annotations"
    __table_args__ = (Index("ix_annotations_user_client", "user_id", "client_id", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    page: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Free text of a note (also inside data), kept apart for search and the PDF.
    text: Mapped[str] = mapped_column(Text, default="")
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    # The meeting whose participants see a shared annotation.
    meeting_id: Mapped[int | None] = mapped_column(
        ForeignKey("meetings.id", ondelete="CASCADE"), default=None, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # What the coordinates are fractions of: "page" (the PDF page, the only space written
    # now) or "frame" (the viewer's clipped frame, rows written before page space).
    space: Mapped[str] = mapped_column(String(8), default="page", server_default="frame")
    # The writer's own id for the annotation (a tablet queueing it offline): a resend with
    # the same id answers the stored annotation instead of adding a second one.
    client_id: Mapped[str | None] = mapped_column(String(64), default=None)
