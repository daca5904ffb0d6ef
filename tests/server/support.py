"""What the server-core tests share: a demo city on any server, raw tokens, audit rows."""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select

from server.audit import AuditRecord
from server.demo import DemoCity, seed_demo
from server.realtime.models import EventRecord
from tests.conftest import DEMO_PASSWORD
from tests.harness import RunningServer


async def small_city(server: RunningServer) -> DemoCity:
    """The conftest's small city, on a server made with custom settings or clock."""
    city, _summary = await seed_demo(server.ctx, password=DEMO_PASSWORD, communes=6,
                                     delegates=9)
    return city


def ed25519_pem() -> tuple[Ed25519PrivateKey, str]:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return key, pem


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unsigned_token(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """``header.claims.`` without a signature (what ``alg: none`` looks like)."""
    return (f"{b64url(json.dumps(header).encode())}."
            f"{b64url(json.dumps(claims).encode())}.")


async def audit_actions(server: RunningServer) -> list[tuple[str, str]]:
    async with server.ctx.read() as session:
        rows = await session.execute(
            select(AuditRecord.action, AuditRecord.subject).order_by(AuditRecord.seq))
        return [(action, subject) for action, subject in rows]


async def event_count(server: RunningServer, topic: str | None = None) -> int:
    async with server.ctx.read() as session:
        query = select(func.count()).select_from(EventRecord)
        if topic is not None:
            query = query.where(EventRecord.topic == topic)
        return int((await session.execute(query)).scalar_one())
