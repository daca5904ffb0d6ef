"""An assembly for voting tests: members, officers, a guest, a meeting in session.

Users and check-ins are written straight through the database session (fast enough for
500 delegates); the meeting is created and started through the meeting service. Tokens
are issued by the server's own token service, so no Argon2 hashing is needed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select

from meeting.meetings import change_state, create_meeting
from meeting.models import Attendance, MeetingState
from meeting.polls.models import Ballot, Poll, PollVoter
from server.audit import AuditRecord
from server.auth.principal import Principal
from server.org.models import Role, Unit, UnitKind, User
from server.realtime.models import EventRecord
from tests.harness import RunningServer


@dataclass
class Member:
    id: int
    name: str
    token: str
    principal: Principal


@dataclass
class Assembly:
    server: RunningServer
    meeting_id: int
    chair: Member
    secretary: Member
    delegates: list[Member]
    absent: list[Member]
    guest: Member
    outsider: Member
    other_meeting_id: int
    _shared: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        """One client for every member (the token goes per request): building an httpx
        client loads the CA bundle, far slower than a ballot."""
        if self._shared is None or self._shared.base_url != httpx.URL(self.server.url):
            self._shared = httpx.AsyncClient(
                base_url=self.server.url,
                verify=False,
                timeout=60,
                limits=httpx.Limits(max_connections=1000, max_keepalive_connections=1000),
            )
        return self._shared

    async def call(
        self, member: Member, method: str, path: str, json: Any = None
    ) -> httpx.Response:
        return await self.http.request(
            method, path, json=json, headers={"Authorization": f"Bearer {member.token}"}
        )

    async def close(self) -> None:
        if self._shared is not None:
            await self._shared.aclose()

    async def create_poll(self, **body: Any) -> dict[str, Any]:
        body.setdefault("title", "Thông qua Nghị quyết về ngân sách năm 2027")
        response = await self.call(
            self.chair, "POST", f"/api/v1/meetings/{self.meeting_id}/polls", body
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def open_poll(self, **body: Any) -> dict[str, Any]:
        poll = await self.create_poll(**body)
        response = await self.call(self.chair, "POST", f"/api/v1/polls/{poll['id']}/open")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def vote(
        self, member: Member, poll_id: int, choice: Any, key: str | None = None
    ) -> httpx.Response:
        return await self.call(
            member,
            "POST",
            f"/api/v1/polls/{poll_id}/ballots",
            {"choice": choice, "idempotency_key": key or uuid.uuid4().hex},
        )

    async def close_poll(self, poll_id: int) -> httpx.Response:
        return await self.call(self.chair, "POST", f"/api/v1/polls/{poll_id}/close")

    async def view(self, poll_id: int, member: Member | None = None) -> dict[str, Any]:
        response = await self.call(member or self.chair, "GET", f"/api/v1/polls/{poll_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())


async def build_assembly(
    server: RunningServer, *, delegates: int = 9, absent: int = 2, tag: str = ""
) -> Assembly:
    """A meeting in session: chair (a member), secretary, ``delegates`` checked-in
    delegates, ``absent`` delegates marked absent with a reason, one guest; plus an
    outsider who is a delegate of another meeting only."""
    ctx = server.ctx
    tag = tag or uuid.uuid4().hex[:6]
    async with ctx.write() as w:
        unit = Unit(
            name=f"Hội đồng nhân dân {tag}",
            kind=UnitKind.STANDING_COMMITTEE.value,
            parent_id=None,
            created_at=w.now,
        )
        w.session.add(unit)
        await w.session.flush()

        def user(username: str, name: str, roles: list[Role]) -> User:
            row = User(
                username=f"{username}_{tag}",
                display_name=name,
                unit_id=unit.id,
                roles=[r.value for r in roles],
                password_hash=None,
                active=True,
                created_at=w.now,
            )
            w.session.add(row)
            return row

        chair = user("chair", "Nguyễn Văn Chủ Tọa", [Role.CHAIR, Role.DELEGATE])
        secretary = user("secretary", "Trần Thị Thư Ký", [Role.SECRETARY])
        members = [
            user(f"d{i:04d}", f"Đại biểu Lê Thị Hằng {i:04d}", [Role.DELEGATE])
            for i in range(delegates + absent)
        ]
        guest = user("guest", "Khách mời Phạm Quốc Hùng", [Role.DELEGATE])
        outsider = user("outsider", "Đại biểu xã khác Võ Đức Tâm", [Role.DELEGATE])
        await w.session.flush()
    now = ctx.clock.now()

    def member(row: User) -> Member:
        return Member(row.id, row.display_name, ctx.tokens.issue(row.id, now)[0], Principal.of(row))

    chair_m, secretary_m = member(chair), member(secretary)
    meeting = await create_meeting(
        ctx,
        chair_m.principal,
        title="Kỳ họp thứ 12 Hội đồng nhân dân thành phố",
        starts_at=now + timedelta(minutes=5),
        place="Hội trường Diên Hồng",
        chair_ids=[chair.id],
        delegate_ids=[m.id for m in members],
        secretary_ids=[secretary.id],
        guest_ids=[guest.id],
    )
    other = await create_meeting(
        ctx,
        chair_m.principal,
        title="Kỳ họp khác",
        starts_at=now,
        chair_ids=[chair.id],
        delegate_ids=[outsider.id],
    )
    await change_state(ctx, chair_m.principal, meeting.id, MeetingState.IN_SESSION)
    await change_state(ctx, chair_m.principal, other.id, MeetingState.IN_SESSION)
    async with ctx.write() as w:
        for row in [chair, *members[:delegates], guest]:
            w.session.add(
                Attendance(
                    meeting_id=meeting.id,
                    user_id=row.id,
                    present=True,
                    checked_in_at=w.now,
                    absent_reason="",
                    marked_by=row.id,
                    updated_at=w.now,
                )
            )
        for row in members[delegates:]:
            w.session.add(
                Attendance(
                    meeting_id=meeting.id,
                    user_id=row.id,
                    present=False,
                    absent_reason="Đi công tác nước ngoài",
                    marked_by=secretary.id,
                    updated_at=w.now,
                )
            )
        w.session.add(
            Attendance(
                meeting_id=other.id,
                user_id=outsider.id,
                present=True,
                checked_in_at=w.now,
                absent_reason="",
                marked_by=outsider.id,
                updated_at=w.now,
            )
        )
    all_members = [member(m) for m in members]
    return Assembly(
        server=server,
        meeting_id=meeting.id,
        chair=chair_m,
        secretary=secretary_m,
        delegates=[chair_m, *all_members[:delegates]],
        absent=all_members[delegates:],
        guest=member(guest),
        outsider=member(outsider),
        other_meeting_id=other.id,
    )


async def stored(server: RunningServer, poll_id: int) -> dict[str, Any]:
    """Everything stored about a poll, to compare before and after a refused request."""
    async with server.ctx.read() as session:
        poll = await session.get(Poll, poll_id)
        voters = (
            await session.execute(
                select(PollVoter.user_id, PollVoter.retry_check, PollVoter.choice)
                .where(PollVoter.poll_id == poll_id)
                .order_by(PollVoter.user_id)
            )
        ).all()
        ballots = (
            await session.execute(
                select(Ballot.receipt, Ballot.choice)
                .where(Ballot.poll_id == poll_id)
                .order_by(Ballot.receipt)
            )
        ).all()
        votes = (
            await session.execute(select(AuditRecord.seq).where(AuditRecord.action == "poll.vote"))
        ).all()
        events = (
            await session.execute(
                select(EventRecord.id).where(
                    EventRecord.type.in_(["poll.created", "poll.opened", "poll.closed"])
                )
            )
        ).all()
    assert poll is not None
    return {
        "state": poll.state,
        "result": poll.result,
        "voters": [tuple(v) for v in voters],
        "ballots": [tuple(b) for b in ballots],
        "vote_audits": len(votes),
        "poll_events": len(events),
    }
