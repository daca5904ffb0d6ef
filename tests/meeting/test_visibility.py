"""The Python and SQL forms of the meeting visibility rules agree (``meeting/visibility.py``)
for every user of the demo city (participants of each role, the creator, outsiders), with
and without the administrator role."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from meeting.models import AgendaDocument, Meeting, Participant
from meeting.visibility import (
    agenda_document_readable_sql,
    may_view_meeting,
    meeting_visible_sql,
    takes_part,
    takes_part_sql,
)
from server.auth.principal import Principal
from server.demo import DemoCity
from server.org.models import Confidentiality, Role, User
from tests.harness import RunningServer


@pytest.mark.parametrize("admin", [False, True])
async def test_python_and_sql_forms_agree(
    server: RunningServer, city: DemoCity, admin: bool
) -> None:
    async with server.ctx.read() as session:
        users = (await session.execute(select(User).order_by(User.id))).scalars().all()
        meetings = (await session.execute(select(Meeting))).scalars().all()
        participants = {
            (p.meeting_id, p.user_id): p
            for p in (await session.execute(select(Participant))).scalars().all()
        }
        documents = (await session.execute(select(AgendaDocument))).scalars().all()
    assert meetings and documents and participants
    seen = {"meeting": 0, "part": 0, "document": 0}
    for user in users:
        roles = frozenset(user.roles) | ({Role.ADMIN.value} if admin else frozenset())
        if not admin:
            roles = roles - {Role.ADMIN.value}
        principal = Principal(
            id=user.id,
            username=user.username,
            display_name=user.display_name,
            unit_id=user.unit_id,
            roles=roles,
            clearance=Confidentiality(user.clearance),
        )
        python = {
            "meeting": {
                m.id
                for m in meetings
                if may_view_meeting(principal, m, participants.get((m.id, user.id)))
            },
            "part": {
                m.id for m in meetings if takes_part(principal, participants.get((m.id, user.id)))
            },
            "document": {
                d.file_id
                for d in documents
                if takes_part(principal, participants.get((d.meeting_id, user.id)))
            },
        }
        async with server.ctx.read() as session:
            sql = {
                "meeting": set(
                    (
                        await session.execute(
                            select(Meeting.id).where(meeting_visible_sql(principal))
                        )
                    ).scalars()
                ),
                "part": set(
                    (
                        await session.execute(
                            select(Meeting.id).where(takes_part_sql(principal, Meeting.id))
                        )
                    ).scalars()
                ),
                "document": {
                    d.file_id
                    for d in documents
                    if (
                        await session.execute(
                            select(agenda_document_readable_sql(principal, d.file_id))
                        )
                    ).scalar()
                },
            }
        assert python == sql, (user.username, admin)
        for rule, found in python.items():
            seen[rule] += bool(found)
    # Some see and some do not: agreement is not agreement on nothing.
    assert all(0 < count < len(users) or admin for count in seen.values()), seen
