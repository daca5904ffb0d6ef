"""Shared steps of the messaging tests: sign-in, issuing, reading what is stored."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from messaging.models import Directive, DirectiveRecipient, Message
from server.audit import AuditRecord
from server.realtime.models import EventRecord
from tests.conftest import DEMO_PASSWORD
from tests.harness import RunningServer


async def token(server: RunningServer, username: str) -> str:
    return await server.login(username, DEMO_PASSWORD)


def directive_body(unit_ids: list[int], **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "Khẩn cấp: ứng phó bão số 3",
        "body": "Các đơn vị triển khai ngay phương án sơ tán dân ở vùng trũng.",
        "urgency": "express",
        "targets": {"unit_ids": unit_ids, "include_descendants": False},
        "ack_required": True,
    }
    body.update(overrides)
    return body


async def issue(server: RunningServer, sender_token: str, body: dict[str, Any]) -> dict[str, Any]:
    async with server.http(sender_token) as client:
        response = await client.post("/api/v1/directives", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def count_rows(server: RunningServer, model: Any, *where: Any) -> int:
    async with server.ctx.read() as session:
        return int(
            (
                await session.execute(select(func.count()).select_from(model).where(*where))
            ).scalar_one()
        )


async def events_of(server: RunningServer, topic: str, type: str | None = None) -> list[Any]:
    async with server.ctx.read() as session:
        stmt = select(EventRecord).where(EventRecord.topic == topic).order_by(EventRecord.seq)
        if type is not None:
            stmt = stmt.where(EventRecord.type == type)
        return list((await session.execute(stmt)).scalars().all())


async def audit_actions(server: RunningServer, action: str) -> list[AuditRecord]:
    async with server.ctx.read() as session:
        return list(
            (
                await session.execute(
                    select(AuditRecord)
                    .where(AuditRecord.action == action)
                    .order_by(AuditRecord.seq)
                )
            )
            .scalars()
            .all()
        )


async def stored_state(server: RunningServer) -> tuple[int, int, int, int]:
    """Counts that must not move when a request is refused."""
    return (
        await count_rows(server, Directive),
        await count_rows(server, DirectiveRecipient),
        await count_rows(server, EventRecord),
        await count_rows(server, Message),
    )
