"""Sign-in throttles, kept per (username, client address) whether or not the account exists."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text
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


class OidcLogin(Base):
    """One sign-in through the OpenID provider, from its start to the end of its grant.

    Started: ``state``, ``nonce`` and the PKCE ``code_verifier`` wait for the provider's
    answer (short-lived, bounded in number). Completed: the account it matched, the
    provider's tokens (checked periodically: a revoked or expired grant ends the sessions)
    and the hash of the one-time code the sign-in page exchanges for our token.
    """

    __tablename__ = "oidc_logins"

    state: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64))
    code_verifier: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    # The page of this application the user was going to, if any.
    next_path: Mapped[str | None] = mapped_column(String(300), default=None)
    # Set when the provider answered (the state can be used once).
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    user_id: Mapped[int | None] = mapped_column(Integer, default=None, index=True)
    handoff_hash: Mapped[str | None] = mapped_column(String(64), default=None, unique=True)
    access_token: Mapped[str | None] = mapped_column(Text, default=None)
    refresh_token: Mapped[str | None] = mapped_column(Text, default=None)
    provider_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # Set when the provider's grant was found revoked or expired.
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
