"""Sign-in throttles, kept per (username, client address) whether or not the account exists."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, UTCDateTime


class LoginThrottle(Base):
    """Failed sign-ins of one username from one client address.

    Keyed by both so that someone guessing from one place slows only their own attempts,
    never the real user signing in from another place.
    """

    __tablename__ = "login_throttles"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    blocked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_failure_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
