"""What media leaves in the meeting's record: the recordings of the floor."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, UTCDateTime

# Longest stored path of a recording, relative to the data directory.
MAX_RECORDING_PATH_CHARS = 500


class MediaRecording(Base):
    """The floor of one sitting, recorded from the first remote join to the last leave."""

    __tablename__ = "media_recordings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    meeting_id: Mapped[int] = mapped_column(
        ForeignKey("meetings.id", ondelete="CASCADE"), index=True
    )
    # Relative to the data directory (Opus in Ogg).
    path: Mapped[str] = mapped_column(String(MAX_RECORDING_PATH_CHARS), unique=True)
    # The participant whose join opened the sitting.
    started_by: Mapped[int | None] = mapped_column(Integer, default=None)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    duration_secs: Mapped[float | None] = mapped_column(Float, default=None)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # Packets lost because the disk could not keep up (a gap in the recording).
    dropped_packets: Mapped[int] = mapped_column(Integer, default=0)
