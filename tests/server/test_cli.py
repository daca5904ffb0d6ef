"""The ``dienhong`` command, run as a real subprocess on the test's database."""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import make_url

from server.audit import AuditRecord, ChainReport, verify_chain
from server.cli import build_parser, gc_thresholds, storage_lines
from server.demo import seed_demo
from server.errors import Unprocessable
from server.logs import wants_json
from server.migrate import head_revisions
from server.org.models import Unit, User
from server.settings import Settings, SettingsError
from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.harness import PG_URL, RunningServer, _pg_execute, drop_database
from tests.server.support import small_city

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    code: int
    out: str
    err: str


async def dienhong(data_dir: Path, database_url: str, *args: str) -> Run:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DIENHONG_")}
    env |= {
        "DIENHONG_DATA_DIR": str(data_dir),
        "DIENHONG_DATABASE_URL": database_url,
        "DIENHONG_LOG_JSON": "false",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


async def on(server: RunningServer, *args: str) -> Run:
    return await dienhong(server.settings.data_dir, server.settings.database_url, *args)


@pytest.fixture
async def empty_database(backend: str, tmp_path: Path) -> AsyncIterator[tuple[Path, str]]:
    """A data dir and a database with no tables at all."""
    data_dir = tmp_path / "fresh"
    if backend == "sqlite":
        yield data_dir, ""
        return
    name = f"dh_empty_{os.getpid()}_{tmp_path.name[-12:]}".replace("-", "_").lower()
    await _pg_execute(f'CREATE DATABASE "{name}"')
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    yield data_dir, url
    await drop_database(url)


async def test_migrate_then_first_admin_on_an_empty_database(
    empty_database: tuple[Path, str],
) -> None:
    data_dir, url = empty_database
    first = await dienhong(data_dir, url, "migrate")
    assert first.code == 0, first.err
    heads = ",".join(sorted(head_revisions()))
    assert first.out.strip() == f"database at {heads} (was empty)"

    created = await dienhong(
        data_dir,
        url,
        "create-user",
        "--username",
        "root.admin",
        "--role",
        "admin",
        "--password",
        "a-long-password",
    )
    assert created.code == 0, created.err
    assert "created root unit" in created.out and "created user root.admin" in created.out
    # With a tree in place the unit must be named.
    second = await dienhong(
        data_dir, url, "create-user", "--username", "other", "--password", "a-long-password"
    )
    assert second.code == 2 and "--unit-id" in second.err
    audit = await dienhong(data_dir, url, "verify-audit")
    assert audit.code == 0 and "2 records" in audit.out


async def test_create_user_against_a_running_server(make_server: MakeServer) -> None:
    server = await make_server()
    admin = await on(
        server,
        "create-user",
        "--username",
        "admin",
        "--role",
        "admin",
        "--password",
        "a-long-password",
    )
    assert admin.code == 0, admin.err
    token = await server.login("admin", "a-long-password")
    async with server.http(token) as client:
        me = (await client.get("/api/v1/me")).json()
        root = me["unit_id"]
        assert me["roles"] == ["admin"]
    staff = await on(
        server,
        "create-user",
        "--username",
        "ward.staff",
        "--unit-id",
        str(root),
        "--role",
        "staff",
        "--clearance",
        "confidential",
        "--display-name",
        "Cán bộ phường",
        "--password",
        "another-password",
    )
    assert staff.code == 0, staff.err
    await server.login("ward.staff", "another-password")

    async def users() -> int:
        async with server.ctx.read() as session:
            return int((await session.execute(select(func.count()).select_from(User))).scalar_one())

    before = await users()
    taken = await on(
        server,
        "create-user",
        "--username",
        "ward.staff",
        "--unit-id",
        str(root),
        "--password",
        "a-long-password",
    )
    assert taken.code == 1 and "username_taken" in taken.err
    weak = await on(
        server, "create-user", "--username", "y", "--unit-id", "99999", "--password", "short"
    )
    assert weak.code == 1 and "weak_password" in weak.err
    assert await users() == before
    with pytest.raises(SystemExit):
        build_parser().parse_args(["create-user", "--username", "z", "--role", "emperor"])


async def test_demo_seeds_exactly_the_contract(make_server: MakeServer) -> None:
    server = await make_server()
    run = await on(
        server, "demo", "--password", DEMO_PASSWORD, "--communes", "5", "--delegates", "7"
    )
    assert run.code == 0, run.err
    async with server.ctx.read() as session:
        units = (await session.execute(select(Unit))).scalars().all()
        usernames = set((await session.execute(select(User.username))).scalars().all())
    roots = [u for u in units if u.parent_id is None]
    assert len(roots) == 1 and roots[0].kind == "standing_committee"
    kinds = sorted(u.kind for u in units)
    assert kinds.count("committee") >= 1
    assert sum(1 for u in units if u.kind in ("commune", "ward")) == 5
    assert usernames == {
        "admin",
        "standing",
        "chair",
        "secretary",
        *(f"delegate{i:03d}" for i in range(1, 8)),
        *(f"ward{i:03d}" for i in range(1, 6)),
    }
    # One staff user per commune/ward unit, and every password is the one given.
    async with server.ctx.read() as session:
        wards = await session.execute(select(User).where(User.username.like("ward%")))
        ward_units = sorted(user.unit_id for user in wards.scalars())
    assert ward_units == sorted(u.id for u in units if u.kind in ("commune", "ward"))
    for username in ("admin", "standing", "delegate007", "ward005"):
        await server.login(username, DEMO_PASSWORD)
    again = await on(server, "demo", "--password", DEMO_PASSWORD)
    assert again.code == 1 and "demo_exists" in again.err
    async with server.ctx.read() as session:
        assert len((await session.execute(select(Unit.id))).all()) == len(units)


def test_demo_defaults_are_the_city_of_the_contract() -> None:
    args = build_parser().parse_args(["demo", "--password", DEMO_PASSWORD])
    assert (args.communes, args.delegates) == (126, 95)


async def test_demo_refuses_a_short_password(server: RunningServer) -> None:
    with pytest.raises(Unprocessable) as refused:
        await seed_demo(server.ctx, password="short", communes=1, delegates=1)
    assert refused.value.code == "weak_password"


async def test_verify_audit_names_the_changed_or_removed_record(
    make_server: MakeServer,
) -> None:
    server = await make_server()
    await small_city(server)
    for username in ("admin", "ward001", "ward002", "chair", "standing"):
        await server.login(username, DEMO_PASSWORD)
    clean = await on(server, "verify-audit")
    assert clean.code == 0, clean.err
    async with server.ctx.read() as session:
        total = int(
            (await session.execute(select(func.count()).select_from(AuditRecord))).scalar_one()
        )
    assert total >= 6 and f"{total} records" in clean.out

    async def tamper(statement: Any) -> None:
        async with server.ctx.db.write_session() as session:
            await session.execute(statement)

    async def original(seq: int) -> AuditRecord:
        async with server.ctx.read() as session:
            row = await session.get(AuditRecord, seq)
            assert row is not None
            return row

    async def verify() -> ChainReport:
        async with server.ctx.read() as session:
            return await verify_chain(session, batch=4)

    # An edited record: the command fails and names it.
    row3 = await original(3)
    await tamper(
        update(AuditRecord).where(AuditRecord.seq == 3).values(subject="user:someone-else")
    )
    edited = await on(server, "verify-audit")
    assert edited.code == 1 and "record 3 " in edited.err and "changed" in edited.err
    await tamper(update(AuditRecord).where(AuditRecord.seq == 3).values(subject=row3.subject))
    assert (await verify()).ok

    # An edited time (PostgreSQL and SQLite keep times differently).
    row2 = await original(2)
    await tamper(
        update(AuditRecord)
        .where(AuditRecord.seq == 2)
        .values(at=row2.at.replace(microsecond=(row2.at.microsecond + 1) % 1_000_000))
    )
    assert (await verify()).first_bad_seq == 2
    await tamper(update(AuditRecord).where(AuditRecord.seq == 2).values(at=row2.at))
    assert (await verify()).ok

    # The newest record removed (the head remembers it), then put back.
    newest = await original(total)
    await tamper(delete(AuditRecord).where(AuditRecord.seq == total))
    truncated = await verify()
    assert not truncated.ok and truncated.first_bad_seq == total
    async with server.ctx.db.write_session() as session:
        session.add(
            AuditRecord(
                **{
                    column: getattr(newest, column)
                    for column in (
                        "seq",
                        "at",
                        "actor_id",
                        "action",
                        "subject",
                        "details",
                        "prev_hash",
                        "hash",
                    )
                }
            )
        )
    assert (await verify()).ok

    # Two records swapped (same seqs, contents exchanged).
    row4, row5 = await original(4), await original(5)
    fields = ("at", "actor_id", "action", "subject", "details", "prev_hash", "hash")
    for target, source in ((4, row5), (5, row4)):
        await tamper(
            update(AuditRecord)
            .where(AuditRecord.seq == target)
            .values(**{f: getattr(source, f) for f in fields})
        )
    assert (await verify()).first_bad_seq == 4
    for target, source in ((4, row4), (5, row5)):
        await tamper(
            update(AuditRecord)
            .where(AuditRecord.seq == target)
            .values(**{f: getattr(source, f) for f in fields})
        )
    assert (await verify()).ok

    # A record removed from the middle: the command fails and names it.
    await tamper(delete(AuditRecord).where(AuditRecord.seq == 4))
    middle = await on(server, "verify-audit")
    assert middle.code == 1 and "record 4 " in middle.err and "missing" in middle.err


def test_collector_thresholds_come_from_the_settings() -> None:
    settings = Settings.from_env(
        {"DIENHONG_GC_YOUNG_OBJECTS": "5000", "DIENHONG_GC_FULL_AFTER": "50"}
    )
    young, middle, full = gc_thresholds(settings)
    assert (young, full) == (5000, 50) and middle >= 1
    for name in ("DIENHONG_GC_YOUNG_OBJECTS", "DIENHONG_GC_FULL_AFTER"):
        with pytest.raises(SettingsError, match="at least 1"):
            gc_thresholds(Settings.from_env({name: "0"}))


async def test_serve_refuses_a_collector_turned_off_before_touching_the_database(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "refused"
    env = {key: value for key, value in os.environ.items() if not key.startswith("DIENHONG_")}
    env |= {"DIENHONG_DATA_DIR": str(data_dir), "DIENHONG_GC_YOUNG_OBJECTS": "0"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        "serve",
        "--port",
        "1",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert "configuration error" in err.decode() and "DIENHONG_GC_YOUNG_OBJECTS" in err.decode()
    assert not (data_dir / "dienhong.sqlite3").exists()


def test_every_command_and_option_explains_itself() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in subparsers._choices_actions}
    assert set(helps) == set(subparsers.choices)
    for name, command in subparsers.choices.items():
        assert helps[name] and len(helps[name]) > 20, name
        assert command.description, name
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and len(action.help) > 10, (name, action.dest)


async def test_demo_help_explains_the_options(tmp_path: Path) -> None:
    run = await dienhong(tmp_path, "", "demo", "--help")
    assert run.code == 0
    for words in (
        "--password",
        "every demo account",
        "--communes",
        "--delegates",
        "DIENHONG_DATA_DIR",
    ):
        assert words in " ".join(run.out.split()), words


async def test_demo_and_serve_say_where_their_data_is(tmp_path: Path) -> None:
    seeded = tmp_path / "here"
    run = await dienhong(
        seeded, "", "demo", "--password", DEMO_PASSWORD, "--communes", "2", "--delegates", "2"
    )
    assert run.code == 0, run.err
    assert f"data directory: {seeded.resolve()}" in run.out.splitlines()
    assert f"database: {(seeded / 'dienhong.sqlite3').resolve()}" in run.out.splitlines()
    # A server started on another directory says so before anything else; here its port is
    # taken, which it says in one sentence and stops.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        elsewhere = tmp_path / "there"
        served = await dienhong(elsewhere, "", "serve", "--port", str(port))
    assert served.code == 1
    lines = served.err.strip().splitlines()
    assert lines == [
        f"data directory: {elsewhere.resolve()}",
        f"database: {(elsewhere / 'dienhong.sqlite3').resolve()}",
        f"Port {port} on 127.0.0.1 is already in use (is another server running?); stop it "
        "or choose another port with --port.",
    ]


def test_database_url_is_shown_without_its_password(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, database_url="postgresql+asyncpg://dh:s3cret@db.example:5432/city"
    )
    lines = storage_lines(settings)
    assert lines[1] == "database: postgresql+asyncpg://dh:***@db.example:5432/city"
    assert not any("s3cret" in line for line in lines)


def test_logs_are_readable_at_a_terminal_and_json_otherwise() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert wants_json("auto", stream=io.StringIO()) is True
    assert wants_json("auto", stream=Terminal()) is False
    assert wants_json("json", stream=Terminal()) is True
    assert wants_json("text", stream=io.StringIO()) is False
    assert wants_json("auto", as_json=False, stream=io.StringIO()) is False
    with pytest.raises(ValueError):
        wants_json("yaml")


async def test_unlock_lifts_a_sign_in_throttle(make_server: MakeServer) -> None:
    server = await make_server(login_max_failures=1)
    await small_city(server)
    async with server.http() as client:
        for _ in range(2):
            await client.post(
                "/api/v1/auth/login", json={"username": "chair", "password": "not-the-password"}
            )
        held = await client.post(
            "/api/v1/auth/login", json={"username": "chair", "password": DEMO_PASSWORD}
        )
    assert held.status_code == 429
    run = await on(server, "unlock", "chair")
    assert run.code == 0, run.err
    assert "lifted 1 sign-in throttle(s) of chair" in run.out
    await server.login("chair", DEMO_PASSWORD)
