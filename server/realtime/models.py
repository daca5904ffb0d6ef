"""The event log: per-topic sequence counters and the events themselves."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, UTCDateTime


class Topic(Base):
    __tablename__ = "topics"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    # The seq of the newest event; the next event gets seq + 1.
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    # Events with seq <= pruned_through have been deleted; resuming before them is a reset.
    pruned_through: Mapped[int] = mapped_column(BigInteger, default=0)


class EventRecord(Base):
    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("topic", "seq", name="uq_events_topic_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(100))
    seq: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
