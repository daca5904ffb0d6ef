"""Helpers for the files tests: signing in, uploading, and what is stored."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from server.audit import AuditRecord
from server.demo import DemoCity, seed_demo
from server.files.models import StoredFile
from tests.conftest import DEMO_PASSWORD
from tests.harness import RunningServer


@dataclass
class Stored:
    rows: int
    upload_audits: int
    files_on_disk: frozenset[str]


async def stored(server: RunningServer) -> Stored:
    """Everything an upload could leave behind: rows, audit records, files on disk."""
    async with server.ctx.read() as session:
        rows = (await session.execute(select(func.count()).select_from(StoredFile))).scalar()
        audits = (
            await session.execute(
                select(func.count())
                .select_from(AuditRecord)
                .where(AuditRecord.action == "file.upload")
            )
        ).scalar()
    root = Path(server.settings.data_dir) / "files"
    on_disk = (
        frozenset(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        if root.exists()
        else frozenset()
    )
    return Stored(int(rows or 0), int(audits or 0), on_disk)


async def upload(
    client: httpx.AsyncClient,
    data: bytes,
    name: str = "tai-lieu.pdf",
    content_type: str = "application/pdf",
    **kwargs: Any,
) -> httpx.Response:
    return await client.post("/api/v1/files", files={"file": (name, data, content_type)}, **kwargs)


@pytest.fixture
async def tokens(server: RunningServer, city: DemoCity) -> dict[str, str]:
    """Tokens of three delegates and a ward officer of the demo city."""
    names = ["delegate001", "delegate002", "delegate003", "ward001"]
    return {name: await server.login(name, DEMO_PASSWORD) for name in names}


async def seeded_token(server: RunningServer, username: str) -> str:
    """Seed the small demo city on ``server`` and sign ``username`` in."""
    await seed_demo(server.ctx, password=DEMO_PASSWORD, communes=6, delegates=9)
    return await server.login(username, DEMO_PASSWORD)
