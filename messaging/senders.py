"""Who wrote it: the author of an instruction, a reply or a message as every reader of it
may see them — display name, title and unit — so a commune clerk who never talked to the
sender still reads who gave the instruction.

The card holds nothing a reader could not already learn from the thing itself being
addressed to them: no username, roles list or clearance. ``title`` is the author's position
named by its most senior role (a key such as ``"standing"``, which the clients translate).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.org.models import Role, Unit, User

# Most senior first: the title a person is known by when they hold several roles.
TITLE_ORDER = (Role.STANDING, Role.CHAIR, Role.SECRETARY, Role.DELEGATE, Role.ADMIN, Role.STAFF)
# Users per IN (...) list.
CHUNK = 500


# The cards of a list of users, built once.
_CARDS = (
    select(User.id, User.display_name, User.roles, User.unit_id, Unit.name)
    .join(Unit, Unit.id == User.unit_id)
    .where(User.id.in_(bindparam("ids", expanding=True)))
)


def title_of(roles: Iterable[str]) -> str | None:
    """The position a person with these roles is known by (a role key), or None."""
    held = set(roles or ())
    for role in TITLE_ORDER:
        if role.value in held:
            return role.value
    return None


def unknown_card(user_id: int) -> dict[str, Any]:
    return {"id": user_id, "display_name": "", "title": None, "unit_id": None, "unit_name": None}


async def sender_cards(session: AsyncSession, user_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """The card of each of these users, by id (unknown ids are left out)."""
    ids = sorted(set(user_ids))
    cards: dict[int, dict[str, Any]] = {}
    for start in range(0, len(ids), CHUNK):
        rows = await session.execute(_CARDS, {"ids": ids[start : start + CHUNK]})
        for user_id, display_name, roles, unit_id, unit_name in rows.all():
            cards[int(user_id)] = card_of(user_id, display_name, roles, unit_id, unit_name)
    return cards


def card_of(
    user_id: int, display_name: str, roles: Iterable[str], unit_id: int, unit_name: str
) -> dict[str, Any]:
    """The card of a user from their row and their unit's name (the columns of ``_CARDS``)."""
    return {
        "id": int(user_id),
        "display_name": display_name,
        "title": title_of(roles),
        "unit_id": int(unit_id),
        "unit_name": unit_name,
    }


async def sender_card(session: AsyncSession, user_id: int) -> dict[str, Any]:
    """One user's card (a card with no name when the user is unknown)."""
    return (await sender_cards(session, [user_id])).get(user_id) or unknown_card(user_id)
