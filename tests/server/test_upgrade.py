"""Upgrades: a database made at the first migration head, with people, events and an audit
chain in it, migrated to the current heads on SQLite and PostgreSQL.

The old data is written with plain SQL against the first head's own columns (the models of
today may have more), the way that release wrote it; after ``dienhong migrate`` every row
reads back the same, the audit chain verifies, and the server of today serves it: the old
password signs in and a socket resumes the old events.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from server.audit import GENESIS_HASH, record_hash
from server.auth.passwords import hash_password_sync
from server.db import UTCDateTime
from server.migrate import head_revisions, migrate
from server.settings import Settings
from tests import harness
from tests.harness import PG_URL, RunningServer, _pg_execute, drop_database
from tests.server.test_cli import dienhong

FIRST_HEAD = "0001_core"
PASSWORD = "mat-khau-cu-2025"
T0 = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)

units = sa.table(
    "units",
    sa.column("id"),
    sa.column("name"),
    sa.column("kind"),
    sa.column("parent_id"),
    sa.column("created_at", UTCDateTime()),
)
users = sa.table(
    "users",
    sa.column("id"),
    sa.column("username"),
    sa.column("display_name"),
    sa.column("unit_id"),
    sa.column("roles", sa.JSON()),
    sa.column("clearance"),
    sa.column("is_unit_head", sa.Boolean()),
    sa.column("password_hash"),
    sa.column("active", sa.Boolean()),
    sa.column("created_at", UTCDateTime()),
)
topics = sa.table("topics", sa.column("name"), sa.column("seq"), sa.column("pruned_through"))
events = sa.table(
    "events",
    sa.column("topic"),
    sa.column("seq"),
    sa.column("type"),
    sa.column("data", sa.JSON()),
    sa.column("at", UTCDateTime()),
)
audit_log = sa.table(
    "audit_log",
    sa.column("seq"),
    sa.column("at", UTCDateTime()),
    sa.column("actor_id"),
    sa.column("action"),
    sa.column("subject"),
    sa.column("details", sa.JSON()),
    sa.column("prev_hash"),
    sa.column("hash"),
)
audit_head = sa.table("audit_head", sa.column("id"), sa.column("seq"), sa.column("hash"))


@pytest.fixture
async def empty(backend: str, tmp_path: Path) -> AsyncIterator[Settings]:
    data_dir = tmp_path / "old"
    if backend == "sqlite":
        yield Settings(data_dir=data_dir)
        return
    name = f"dh_upgrade_{os.getpid()}_{tmp_path.name[-12:]}".replace("-", "_").lower()
    await _pg_execute(f'CREATE DATABASE "{name}"')
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    yield Settings(data_dir=data_dir, database_url=url)
    await drop_database(url)


def old_rows() -> dict[str, list[dict[str, Any]]]:
    """What the first release kept: a root unit and a ward, three people, events, audit."""
    password_hash = hash_password_sync(PASSWORD)
    unit_rows = [
        {
            "id": 1,
            "name": "Thường trực HĐND",
            "kind": "standing_committee",
            "parent_id": None,
            "created_at": T0,
        },
        {"id": 2, "name": "Phường Ba Đình", "kind": "ward", "parent_id": 1, "created_at": T0},
    ]
    user_rows = [
        {
            "id": 1,
            "username": "admin",
            "display_name": "Quản trị",
            "unit_id": 1,
            "roles": ["admin"],
            "clearance": "secret",
            "is_unit_head": False,
            "password_hash": password_hash,
            "active": True,
            "created_at": T0,
        },
        {
            "id": 2,
            "username": "ward.head",
            "display_name": "Trưởng phường",
            "unit_id": 2,
            "roles": ["staff"],
            "clearance": "none",
            "is_unit_head": True,
            "password_hash": password_hash,
            "active": True,
            "created_at": T0,
        },
        {
            "id": 3,
            "username": "left",
            "display_name": "Đã nghỉ",
            "unit_id": 2,
            "roles": ["staff"],
            "clearance": "none",
            "is_unit_head": False,
            "password_hash": None,
            "active": False,
            "created_at": T0,
        },
    ]
    # Recent events (older ones are pruned at start-up, DIENHONG_EVENT_RETENTION_SECS).
    recent = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    event_rows = [
        {
            "topic": "unit:2",
            "seq": n,
            "type": "unit.updated",
            "data": {"name": f"Phường {n}"},
            "at": recent + timedelta(minutes=n),
        }
        for n in range(1, 4)
    ]
    audit_rows = []
    prev = GENESIS_HASH
    for seq, (action, subject) in enumerate(
        [
            ("unit.create", "unit:1"),
            ("unit.create", "unit:2"),
            ("user.create", "user:1"),
            ("user.create", "user:2"),
            ("auth.login", "user:2"),
        ],
        start=1,
    ):
        at = T0 + timedelta(seconds=seq)
        details = {"by": "bootstrap", "n": seq}
        digest = record_hash(seq, at, 1, action, subject, details, prev)
        audit_rows.append(
            {
                "seq": seq,
                "at": at,
                "actor_id": 1,
                "action": action,
                "subject": subject,
                "details": details,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    return {
        "units": unit_rows,
        "users": user_rows,
        "events": event_rows,
        "topics": [{"name": "unit:2", "seq": 3, "pruned_through": 0}],
        "audit_log": audit_rows,
        "audit_head": [{"id": 1, "seq": 5, "hash": prev}],
    }


TABLES = {
    "units": units,
    "users": users,
    "topics": topics,
    "events": events,
    "audit_log": audit_log,
    "audit_head": audit_head,
}
ORDER = {
    "units": "id",
    "users": "id",
    "topics": "name",
    "events": "seq",
    "audit_log": "seq",
    "audit_head": "id",
}


async def write_old(settings: Settings, rows: dict[str, list[dict[str, Any]]]) -> None:
    engine = create_async_engine(settings.effective_database_url)
    try:
        async with engine.begin() as conn:
            for name, table in TABLES.items():
                await conn.execute(table.insert(), rows[name])
            if not settings.is_sqlite:
                # Rows written with their ids leave the sequences behind: the old release
                # made them through the sequences, so bring them level as it would be.
                for name in ("units", "users"):
                    await conn.execute(
                        sa.text(
                            f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                            f"(SELECT max(id) FROM {name}))"
                        )
                    )
    finally:
        await engine.dispose()


async def read_back(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    engine = create_async_engine(settings.effective_database_url)
    try:
        async with engine.connect() as conn:
            result = {}
            for name, table in TABLES.items():
                rows = await conn.execute(sa.select(*table.c).order_by(table.c[ORDER[name]]))
                result[name] = [dict(row._mapping) for row in rows]
            return result
    finally:
        await engine.dispose()


async def test_a_database_of_the_first_release_migrates_to_the_current_heads(
    empty: Settings,
    backend: str,
) -> None:
    settings = empty
    _before, at = await migrate(settings, FIRST_HEAD)
    assert at == FIRST_HEAD
    rows = old_rows()
    await write_old(settings, rows)

    run = await dienhong(settings.data_dir, settings.database_url, "migrate")
    assert run.code == 0, run.err
    assert run.out.strip() == (
        f"database at {','.join(sorted(head_revisions()))} (was {FIRST_HEAD})"
    )
    assert await read_back(settings) == rows
    audit = await dienhong(settings.data_dir, settings.database_url, "verify-audit")
    assert audit.code == 0, audit.err
    assert f"5 records, head {rows['audit_head'][0]['hash']}" in audit.out

    server = RunningServer(
        harness.test_settings(settings.data_dir, settings.database_url, backend), None, None
    )
    await server.start()
    try:
        token = await server.login("ward.head", PASSWORD)
        async with server.http(token) as client:
            me = (await client.get("/api/v1/me")).json()
        assert (me["username"], me["unit_id"]) == ("ward.head", 2)
        async with server.socket(token) as ws:
            assert ws.ready["topics"]["unit:2"] == 3
            frames = await ws.subscribe({"unit:2": 0})
        names = [f["data"]["name"] for f in frames if f["op"] == "event"]
        assert names == ["Phường 1", "Phường 2", "Phường 3"]
        # New writes extend the old chain and the old topic.
        admin = await server.login("admin", PASSWORD)
        async with server.http(admin) as client:
            response = await client.patch("/api/v1/units/2", json={"name": "Phường mới"})
            assert response.status_code == 200, response.text
            created = await client.post(
                "/api/v1/units", json={"name": "Phường Tây Hồ", "kind": "ward", "parent_id": 1}
            )
            assert created.status_code == 201, created.text
    finally:
        await server.stop()
    audit = await dienhong(settings.data_dir, settings.database_url, "verify-audit")
    assert audit.code == 0, audit.err
