"""Who is making a request, as far as every feature needs to know."""

from __future__ import annotations

from dataclasses import dataclass

from server.org.models import Confidentiality, Role, User


@dataclass(frozen=True)
class Principal:
    id: int
    username: str
    display_name: str
    unit_id: int
    roles: frozenset[str]
    clearance: Confidentiality

    @classmethod
    def of(cls, user: User) -> Principal:
        return cls(
            id=user.id,
            username=user.username,
            display_name=user.display_name,
            unit_id=user.unit_id,
            roles=frozenset(user.roles),
            clearance=Confidentiality(user.clearance),
        )

    def has_role(self, *roles: Role) -> bool:
        return any(role.value in self.roles for role in roles)

    @property
    def is_admin(self) -> bool:
        return Role.ADMIN.value in self.roles
