"""Units (a tree), users, roles and clearance levels."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, UTCDateTime


class UnitKind(enum.StrEnum):
    STANDING_COMMITTEE = "standing_committee"
    COMMITTEE = "committee"
    DELEGATION = "delegation"
    DEPARTMENT = "department"
    COMMUNE = "commune"
    WARD = "ward"


class Role(enum.StrEnum):
    ADMIN = "admin"
    # Issues urgent instructions on behalf of the Standing Committee.
    STANDING = "standing"
    CHAIR = "chair"
    SECRETARY = "secretary"
    DELEGATE = "delegate"
    STAFF = "staff"
    # Reads the audit log and nothing else of the administration.
    AUDITOR = "auditor"


class Confidentiality(enum.StrEnum):
    """Độ mật, in increasing order; a user's clearance is one of these levels."""

    NONE = "none"
    CONFIDENTIAL = "confidential"
    SECRET = "secret"
    TOP_SECRET = "top_secret"

    @property
    def rank(self) -> int:
        return _CONFIDENTIALITY_ORDER.index(self)

    def permits(self, level: Confidentiality) -> bool:
        """True when a holder of this clearance may read content at ``level``."""
        return self.rank >= level.rank


_CONFIDENTIALITY_ORDER = list(Confidentiality)


class Unit(Base):
    __tablename__ = "units"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("units.id", ondelete="RESTRICT"), index=True, default=None
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), index=True)
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    clearance: Mapped[str] = mapped_column(String(16), default=Confidentiality.NONE.value)
    # The head of a unit is told when the unit is late on an instruction.
    is_unit_head: Mapped[bool] = mapped_column(Boolean, default=False)
    # Null for accounts that only sign in through the external SSO issuer.
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Chức danh, shown beside the name (e.g. "Chủ tịch UBND phường").
    title: Mapped[str] = mapped_column(String(200), default="")
    # Raised whenever every token of the user must stop working (password change, reset,
    # disabling, "sign out everywhere"); tokens carry the version they were issued with.
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    # Set by an administrator's reset: the user chooses a new password at next sign-in.
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    def has_role(self, *roles: Role) -> bool:
        return any(role.value in self.roles for role in roles)
