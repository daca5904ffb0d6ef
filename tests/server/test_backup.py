"""``dienhong backup`` and ``dienhong restore``, run as real commands beside a running server.

A backup taken while writes go on restores into an empty data directory (and an empty
PostgreSQL database) with its audit chain whole, every uploaded file reading back and the
signing key in place (a token issued before still holds). A backup that was cut short, or
whose parts were changed or removed, is refused before anything is written.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from server.backup import MANIFEST, pg_target
from tests import harness
from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.harness import PG_URL, RunningServer, _pg_execute, drop_database
from tests.server.support import small_city
from tests.server.test_cli import ROOT, Run, dienhong

NOTE = "Biên bản kỳ họp thứ 12 — bản lưu.\n".encode()


@pytest.fixture
async def empty_target(backend: str, tmp_path: Path) -> AsyncIterator[tuple[Path, str]]:
    """A data dir that does not exist yet, and (PostgreSQL) a database with no tables."""
    data_dir = tmp_path / "restored"
    if backend == "sqlite":
        yield data_dir, ""
        return
    name = f"dh_restore_{os.getpid()}_{tmp_path.name[-12:]}".replace("-", "_").lower()
    await _pg_execute(f'CREATE DATABASE "{name}"')
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    yield data_dir, url
    await drop_database(url)


async def populated(make_server: MakeServer) -> tuple[RunningServer, str, int]:
    """A server with the small city, an uploaded note; returns it, a token, the file id."""
    server = await make_server()
    await small_city(server)
    token = await server.login("standing", DEMO_PASSWORD)
    async with server.http(token) as client:
        response = await client.post(
            "/api/v1/files", files={"file": ("ghi-chu.txt", NOTE, "text/plain")}
        )
    assert response.status_code == 201, response.text
    return server, token, int(response.json()["id"])


async def backup_while_writing(server: RunningServer, dest: Path) -> Run:
    """Run ``dienhong backup`` while events and audit records keep being written."""
    stop = asyncio.Event()

    async def writer() -> int:
        written = 0
        while not stop.is_set():
            async with server.ctx.write() as w:
                await w.emit("unit:1", "test.note", {"n": written})
                await w.audit(None, "test.backup_note", subject=str(written))
            written += 1
            await asyncio.sleep(0.005)
        return written

    task = asyncio.create_task(writer())
    try:
        run = await on_server(server, "backup", str(dest))
    finally:
        stop.set()
        written = await task
    assert written > 0
    return run


def private_modes(top: Path) -> set[int]:
    """The modes of the files under ``top``, after checking that ``top`` is 0700."""
    assert stat.S_IMODE(top.stat().st_mode) == 0o700, top
    return {stat.S_IMODE(p.stat().st_mode) for p in top.rglob("*") if p.is_file()}


async def on_server(server: RunningServer, *args: str) -> Run:
    return await dienhong(server.settings.data_dir, server.settings.database_url, *args)


async def test_backup_while_running_then_restore_into_an_empty_place(
    make_server: MakeServer,
    empty_target: tuple[Path, str],
    tmp_path: Path,
    backend: str,
) -> None:
    server, token, file_id = await populated(make_server)
    dest = tmp_path / "backup"
    run = await backup_while_writing(server, dest)
    assert run.code == 0, run.err
    manifest = json.loads((dest / MANIFEST).read_text())
    assert manifest["database"]["kind"] == backend
    assert manifest["counts"]["users"] > 10 and manifest["counts"]["files"] >= 2
    assert manifest["audit_head"]["seq"] > 0 and len(manifest["audit_head"]["hash"]) == 64
    assert all(len(part["sha256"]) == 64 for part in manifest["parts"].values())
    # A backup holds what the data directory holds: for the server's user only.
    assert private_modes(dest) == {0o600}

    data_dir, url = empty_target
    restored = await dienhong(data_dir, url, "restore", str(dest))
    assert restored.code == 0, restored.err
    audit = await dienhong(data_dir, url, "verify-audit")
    assert audit.code == 0, audit.err
    assert f"{manifest['audit_head']['seq']} records" in audit.out
    assert private_modes(data_dir) == {0o600}

    # The restored installation serves: the old token holds (same key), the file reads back.
    again = RunningServer(harness.test_settings(data_dir, url, backend), None, None)
    await again.start()
    try:
        async with again.http(token) as client:
            me = await client.get("/api/v1/me")
            body = await client.get(f"/api/v1/files/{file_id}")
        assert me.status_code == 200 and me.json()["username"] == "standing"
        assert body.status_code == 200 and body.content == NOTE
        await again.login("ward001", DEMO_PASSWORD)
    finally:
        await again.stop()


async def test_restore_refuses_a_damaged_or_partial_backup(
    make_server: MakeServer,
    empty_target: tuple[Path, str],
    tmp_path: Path,
    backend: str,
) -> None:
    server, _token, _file_id = await populated(make_server)
    dest = tmp_path / "backup"
    run = await on_server(server, "backup", str(dest))
    assert run.code == 0, run.err
    manifest = json.loads((dest / MANIFEST).read_text())
    data_dir, url = empty_target
    blob = next(name for name in manifest["parts"] if name.startswith("files/blobs/"))
    database = manifest["database"]["part"]

    async def refused(expected: str) -> None:
        result = await dienhong(data_dir, url, "restore", str(dest))
        assert result.code != 0 and expected in result.err, result.err
        # Nothing was written: the target stays empty.
        assert not data_dir.exists() or not any(data_dir.iterdir())
        if backend == "postgresql":
            count = await pg_tables(url)
            assert count == 0

    # A changed uploaded file.
    original = (dest / blob).read_bytes()
    (dest / blob).write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    await refused(f"{blob} does not match its SHA-256")
    (dest / blob).write_bytes(original)
    # A changed database.
    dump = (dest / database).read_bytes()
    (dest / database).write_bytes(dump[: len(dump) // 2])
    await refused(f"{database} does not match its SHA-256")
    (dest / database).write_bytes(dump)
    # A missing part.
    (dest / blob).unlink()
    await refused(f"the backup is partial: {blob} is missing")
    (dest / blob).write_bytes(original)
    # A file left out of the manifest's parts.
    edited = dict(manifest, parts={k: v for k, v in manifest["parts"].items() if k != blob})
    (dest / MANIFEST).write_text(json.dumps(edited))
    await refused("is not among its parts")
    # A manifest cut short, and none at all (a backup that never finished).
    (dest / MANIFEST).write_text(json.dumps(manifest)[:200])
    await refused("damaged: not readable JSON")
    (dest / MANIFEST).unlink()
    await refused("has no manifest.json: the backup is partial")
    (dest / MANIFEST).write_text(json.dumps(manifest))

    # A target that is not empty is refused too; the intact backup then restores.
    data_dir.mkdir(parents=True)
    (data_dir / "left-over").write_text("x")
    result = await dienhong(data_dir, url, "restore", str(dest))
    assert result.code != 0 and "is not empty" in result.err
    (data_dir / "left-over").unlink()
    result = await dienhong(data_dir, url, "restore", str(dest))
    assert result.code == 0, result.err
    # Restoring a second time over it is refused.
    result = await dienhong(data_dir, url, "restore", str(dest))
    assert result.code != 0 and "is not empty" in result.err


async def test_backup_refuses_a_destination_in_use(make_server: MakeServer, tmp_path: Path) -> None:
    server = await make_server(features=[])
    dest = tmp_path / "used"
    dest.mkdir()
    (dest / "something").write_text("x")
    run = await on_server(server, "backup", str(dest))
    assert run.code == 1 and "not an empty directory" in run.err
    assert sorted(p.name for p in dest.iterdir()) == ["something"]


async def pg_tables(url: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(pg_target(url).dsn)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
            )
        )
    finally:
        await conn.close()


async def test_a_failing_pg_dump_fails_the_backup(
    make_server: MakeServer, tmp_path: Path, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("pg_dump backs up PostgreSQL only")
    server = await make_server(features=[])
    # A pg_dump that fails as a real one does when the server refuses it.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake = fake_bin / "pg_dump"
    fake.write_text("#!/bin/sh\necho 'pg_dump: error: connection refused' >&2\nexit 1\n")
    fake.chmod(0o755)
    dest = tmp_path / "backup"
    env = {key: value for key, value in os.environ.items() if not key.startswith("DIENHONG_")}
    env |= {
        "DIENHONG_DATA_DIR": str(server.settings.data_dir),
        "DIENHONG_DATABASE_URL": server.settings.database_url,
        "PATH": f"{fake_bin}:{os.environ.get('PATH', '')}",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        "backup",
        str(dest),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 1
    assert "pg_dump failed with exit status 1: pg_dump: error: connection refused" in err.decode()
    assert not (dest / MANIFEST).exists()
