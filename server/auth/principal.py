"""Who is making a request, as far as every feature needs to know, and a short-lived cache
of recently authenticated principals so a request need not read its user row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select

from server.batched_reads import BatchedReads
from server.clock import Clock
from server.org.models import Confidentiality, Role, User

if TYPE_CHECKING:
    from server.db import Database


@dataclass(frozen=True)
class Principal:
    id: int
    username: str
    display_name: str
    unit_id: int
    roles: frozenset[str]
    clearance: Confidentiality
    # The user's token version when read: a token of another version is refused.
    token_version: int = 0

    @classmethod
    def of(cls, user: User) -> Principal:
        return cls(
            id=user.id,
            username=user.username,
            display_name=user.display_name,
            unit_id=user.unit_id,
            roles=frozenset(user.roles),
            clearance=Confidentiality(user.clearance),
            token_version=int(user.token_version or 0),
        )

    @classmethod
    def of_row(cls, row: Any) -> Principal:
        """From a row with the columns of ``PRINCIPAL_COLUMNS`` (a Core read, no ORM)."""
        return cls(
            id=int(row.id),
            username=str(row.username),
            display_name=str(row.display_name),
            unit_id=int(row.unit_id),
            roles=frozenset(row.roles or ()),
            clearance=Confidentiality(row.clearance),
            token_version=int(row.token_version or 0),
        )

    def has_role(self, *roles: Role) -> bool:
        return any(role.value in self.roles for role in roles)

    @property
    def is_admin(self) -> bool:
        return Role.ADMIN.value in self.roles

    def accepts(self, claims: dict[str, Any]) -> bool:
        """Whether one of our tokens with these claims is of the user's current version
        (a token without ``ver`` is of version 0)."""
        version = claims.get("ver", 0)
        return (
            isinstance(version, int)
            and not isinstance(version, bool)
            and version == self.token_version
        )


# What authenticating a request reads of a user: the principal and whether it is active.
PRINCIPAL_COLUMNS = (
    User.id,
    User.username,
    User.display_name,
    User.unit_id,
    User.roles,
    User.clearance,
    User.active,
    User.token_version,
)

_PRINCIPALS_BY_ID = select(*PRINCIPAL_COLUMNS).where(
    User.id.in_(bindparam("user_ids", expanding=True))
)
# Users per statement of ``principal_rows`` (bound values per statement stay well below
# SQLite's limit).
PRINCIPAL_ROWS_CHUNK = 500


def principal_rows(db: Database) -> BatchedReads[int, Any]:
    """The row (``PRINCIPAL_COLUMNS``) of a user by id, or None: users asked at the same
    time are read with one statement (after a restart every socket and request asks)."""

    async def read(user_ids: Sequence[int]) -> dict[int, Any]:
        found: dict[int, Any] = dict.fromkeys(user_ids)
        for start in range(0, len(user_ids), PRINCIPAL_ROWS_CHUNK):
            chunk = list(user_ids[start : start + PRINCIPAL_ROWS_CHUNK])
            for row in await db.read_rows(_PRINCIPALS_BY_ID, {"user_ids": chunk}):
                found[int(row.id)] = row
        return found

    return BatchedReads(read)


class PrincipalCache:
    """Principals of active users by id, each kept for at most ``ttl_secs``.

    A change to a user through the organisation service drops its entry on the node that
    made it, at commit; other nodes drop theirs when the ``user.updated`` event reaches
    them. The time limit bounds how long a node that missed that event (a broker outage)
    can act on old roles or on an account that was disabled. Bounded: when full, the entry
    cached longest ago goes first. Inactive or unknown users are never cached.

    A read that started before a change must not put the old row back after the change
    dropped it: ``ticket()`` before reading, ``put(principal, ticket)`` after; any drop in
    between makes the ticket stale and the put a no-op.
    """

    def __init__(self, clock: Clock, ttl_secs: float, max_entries: int) -> None:
        self.clock = clock
        self.ttl = timedelta(seconds=ttl_secs)
        self.max_entries = max_entries
        self.enabled = ttl_secs > 0 and max_entries > 0
        self._entries: dict[int, tuple[Principal, datetime]] = {}
        self._ids_by_username: dict[str, int] = {}
        self._generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, user_id: int) -> Principal | None:
        """The cached principal of ``user_id``, if cached less than the TTL ago."""
        entry = self._entries.get(user_id)
        if entry is None:
            return None
        principal, expires = entry
        if self.clock.now() >= expires:
            self._drop(user_id)
            return None
        return principal

    def get_by_username(self, username: str) -> Principal | None:
        """As ``get``, for tokens of the SSO issuer (which name users by username)."""
        user_id = self._ids_by_username.get(username)
        return None if user_id is None else self.get(user_id)

    def ticket(self) -> int:
        """Take before reading a user; hand to ``put``."""
        return self._generation

    def put(self, principal: Principal, ticket: int) -> None:
        """Cache a principal just read, unless a user was dropped since ``ticket``."""
        if not self.enabled or ticket != self._generation:
            return
        self._drop(principal.id)
        while len(self._entries) >= self.max_entries:
            self._drop(next(iter(self._entries)))
        self._entries[principal.id] = (principal, self.clock.now() + self.ttl)
        self._ids_by_username[principal.username] = principal.id

    def forget(self, user_id: int) -> None:
        """The user changed: its next request reads it again."""
        self._generation += 1
        self._drop(user_id)

    def _drop(self, user_id: int) -> None:
        entry = self._entries.pop(user_id, None)
        if entry is not None:
            self._ids_by_username.pop(entry[0].username, None)
