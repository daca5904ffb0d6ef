"""Backups of a running installation, and restoring one into an empty place.

A backup is a directory::

    manifest.json             written last: without it the backup is partial
    database.sqlite3          SQLite's online backup of the live database, or
    database.pgdump           ``pg_dump --format=custom`` of the PostgreSQL database
    files/blobs/<aa>/<sha>    the uploaded files the database refers to
    recordings/...            the floor recordings the database refers to
    keys/jwt-ed25519.pem      the token signing key (0600), when it lives in the data dir
    keys/retired/<id>.pem     the public halves of the keys it replaced (rotate-key)
    audit-checkpoints.jsonl   the signed checkpoints of the audit chain up to its head in
                              the backup (restored where DIENHONG_AUDIT_CHECKPOINT_PATH says)

The manifest names the version, the migration heads, the audit chain's head, the row count
of every table and the SHA-256 and size of every part. Everything is read from one
snapshot: SQLite's copy, or on PostgreSQL one exported snapshot that ``pg_dump`` and the
manifest's own queries share. Uploaded files and recordings are never changed in place
(content-addressed, written once), so copying those the snapshot refers to, after it was
taken, gives a consistent whole.

``restore`` checks the manifest and every part before it writes anything, and refuses a
damaged or partial backup; it writes only into an empty data directory (and, on
PostgreSQL, an empty database), then checks what it restored: the row counts, the audit
chain up to the manifest's head, and every uploaded file's bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from server.audit_anchor import CHECKPOINT_FILE, checkpoint_path, checkpoints_up_to
from server.auth.tokens import RETIRED_KEYS_PART, SIGNING_KEY_PART
from server.private_paths import PRIVATE_DIR_MODE, open_private, private_dir, private_file
from server.settings import Settings

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
SQLITE_PART = "database.sqlite3"
PG_PART = "database.pgdump"
KEY_PART = SIGNING_KEY_PART
BLOB_DIR = "files/blobs"
RECORDINGS_DIR = "recordings"
# SQLite's online backup copies every page in one step: one read transaction, which in
# WAL mode never blocks the server's writers. (In several steps, a write by the server
# between two steps would restart the copy, and a busy server could keep restarting it.)
SQLITE_BACKUP_PAGES = -1
HASH_CHUNK = 1 << 20
GENESIS_HASH = "0" * 64


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class Snapshot:
    """What the manifest says about the database, read from the snapshot itself."""

    heads: list[str]
    audit_seq: int
    audit_hash: str
    counts: dict[str, int]
    blobs: list[str]
    recordings: list[str]


def software_version() -> str:
    try:
        return metadata.version("dienhong")
    except metadata.PackageNotFoundError:
        return "unknown"


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(HASH_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --- reading a snapshot ----------------------------------------------------------------


def _read_sqlite_snapshot(path: Path) -> Snapshot:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        counts = {
            t: int(conn.execute(f"SELECT count(*) FROM {_quote(t)}").fetchone()[0]) for t in tables
        }
        return _snapshot_from(tables, counts, lambda sql: conn.execute(sql).fetchall())
    finally:
        conn.close()


def _snapshot_from(
    tables: list[str], counts: dict[str, int], query: Callable[[str], list[Any]]
) -> Snapshot:
    if "alembic_version" not in tables:
        raise BackupError("the database has never been migrated: nothing to back up")
    heads = sorted(str(row[0]) for row in query("SELECT version_num FROM alembic_version"))
    seq, head = 0, GENESIS_HASH
    if "audit_head" in tables:
        rows = query("SELECT seq, hash FROM audit_head WHERE id = 1")
        if rows:
            seq, head = int(rows[0][0]), str(rows[0][1])
    blobs = (
        sorted(str(row[0]) for row in query("SELECT DISTINCT sha256 FROM files"))
        if "files" in tables
        else []
    )
    recordings = (
        sorted(str(row[0]) for row in query("SELECT path FROM media_recordings"))
        if "media_recordings" in tables
        else []
    )
    return Snapshot(heads, seq, head, counts, blobs, recordings)


# --- PostgreSQL ------------------------------------------------------------------------


@dataclass(frozen=True)
class PgTarget:
    """libpq's view of the configured database: a URL without the password, plus env."""

    dsn: str
    env: dict[str, str]
    database: str


def pg_target(database_url: str) -> PgTarget:
    url = make_url(database_url)
    env = dict(os.environ)
    if url.password:
        # Never on a command line (every local user can read those).
        env["PGPASSWORD"] = str(url.password)
    query = dict(url.query)
    if "ssl" in query:  # asyncpg's name for libpq's sslmode
        query["sslmode"] = query.pop("ssl")
    plain = url.set(drivername="postgresql", password=None, query=query)
    return PgTarget(plain.render_as_string(hide_password=False), env, str(url.database))


async def _run(args: list[str], env: dict[str, str], what: str) -> None:
    try:
        process = await asyncio.create_subprocess_exec(
            *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    except FileNotFoundError as exc:
        raise BackupError(
            f"{args[0]} is not installed (PostgreSQL's client programs are needed to {what})"
        ) from exc
    _out, err = await process.communicate()
    if process.returncode != 0:
        raise BackupError(
            f"{args[0]} failed with exit status {process.returncode}: "
            f"{err.decode(errors='replace').strip()[-2000:]}"
        )


async def _pg_snapshot_and_dump(settings: Settings, dump: Path) -> Snapshot:
    import asyncpg

    target = pg_target(settings.effective_database_url)
    conn = await asyncpg.connect(target.dsn, password=target.env.get("PGPASSWORD"))
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snapshot_id = await conn.fetchval("SELECT pg_export_snapshot()")
            tables = [
                row[0]
                for row in await conn.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                    "ORDER BY tablename"
                )
            ]
            counts = {
                t: int(await conn.fetchval(f"SELECT count(*) FROM {_quote(t)}")) for t in tables
            }
            cache: dict[str, list[Any]] = {}
            for sql in _SNAPSHOT_QUERIES:
                if _table_of(sql) in tables:
                    cache[sql] = [tuple(r) for r in await conn.fetch(sql)]
            snapshot = _snapshot_from(tables, counts, lambda sql: cache.get(sql, []))
            # pg_dump reads the very snapshot this transaction holds open. It keeps the mode
            # of a file that exists: the dump is for the server's user only.
            private_file(dump)
            await _run(
                [
                    "pg_dump",
                    "--format=custom",
                    f"--snapshot={snapshot_id}",
                    "--no-owner",
                    "--no-privileges",
                    f"--file={dump}",
                    f"--dbname={target.dsn}",
                ],
                target.env,
                "back up PostgreSQL",
            )
    finally:
        await conn.close()
    return snapshot


_SNAPSHOT_QUERIES = (
    "SELECT version_num FROM alembic_version",
    "SELECT seq, hash FROM audit_head WHERE id = 1",
    "SELECT DISTINCT sha256 FROM files",
    "SELECT path FROM media_recordings",
)


def _table_of(sql: str) -> str:
    return sql.split(" FROM ", 1)[1].split()[0]


async def _pg_table_count(settings: Settings) -> int:
    import asyncpg

    target = pg_target(settings.effective_database_url)
    conn = await asyncpg.connect(target.dsn, password=target.env.get("PGPASSWORD"))
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
            )
        )
    finally:
        await conn.close()


# --- backup ----------------------------------------------------------------------------


def _copy(source: Path, dest: Path) -> dict[str, Any]:
    """Copy a part (for the server's user only, like everything in a data directory and
    a backup); its SHA-256 and size."""
    dest.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    shutil.copyfile(source, private_file(dest))
    return {"sha256": file_digest(dest), "size": dest.stat().st_size}


def _sqlite_backup(settings: Settings, dest: Path) -> None:
    source_path = Path(make_url(settings.effective_database_url).database or "")
    if not source_path.exists():
        raise BackupError(f"no database at {source_path}: check DIENHONG_DATA_DIR")
    source = sqlite3.connect(
        f"file:{source_path}?mode=ro", uri=True, timeout=settings.sqlite_busy_timeout_ms / 1000
    )
    target = sqlite3.connect(private_file(dest))
    try:
        source.backup(target, pages=SQLITE_BACKUP_PAGES)
        # One file, no WAL beside it: the copy is what restore puts in place.
        target.execute("PRAGMA journal_mode=DELETE")
    finally:
        target.close()
        source.close()


def _prepare_dest(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupError(f"{dest} exists and is not an empty directory: back up into a new one")
    # The backup holds what the data directory holds: for the server's user only.
    private_dir(dest)


async def backup(settings: Settings, dest: Path) -> dict[str, Any]:
    """Write a consistent backup of the installation to ``dest`` (new or empty)."""
    await asyncio.to_thread(_prepare_dest, dest)
    parts: dict[str, dict[str, Any]] = {}
    if settings.is_sqlite:
        kind, part = "sqlite", SQLITE_PART
        await asyncio.to_thread(_sqlite_backup, settings, dest / part)
        snapshot = await asyncio.to_thread(_read_sqlite_snapshot, dest / part)
    else:
        kind, part = "postgresql", PG_PART
        snapshot = await _pg_snapshot_and_dump(settings, dest / part)
    parts[part] = {"sha256": file_digest(dest / part), "size": (dest / part).stat().st_size}

    data_dir = settings.data_dir
    missing: list[str] = []
    for sha in snapshot.blobs:
        name = f"{BLOB_DIR}/{sha[:2]}/{sha}"
        source = data_dir / name
        if not source.is_file():
            missing.append(name)
            continue
        parts[name] = await asyncio.to_thread(_copy, source, dest / name)
    for relative in snapshot.recordings:
        source = data_dir / relative
        # A sitting being recorded right now may not have written its file yet.
        if source.is_file():
            parts[relative] = await asyncio.to_thread(_copy, source, dest / relative)
    if missing:
        raise BackupError(
            f"{len(missing)} uploaded file(s) the database refers to are not "
            f"in {data_dir}, first {missing[0]}: the data directory is damaged"
        )
    key = data_dir / KEY_PART
    if key.is_file():
        (dest / "keys").mkdir(mode=0o700, exist_ok=True)
        parts[KEY_PART] = _copy(key, dest / KEY_PART)
    checkpoints = checkpoints_up_to(settings, snapshot.audit_seq)
    if checkpoints:
        with os.fdopen(open_private(dest / CHECKPOINT_FILE), "w", encoding="utf-8") as handle:
            handle.write(checkpoints)
        parts[CHECKPOINT_FILE] = {
            "sha256": file_digest(dest / CHECKPOINT_FILE),
            "size": (dest / CHECKPOINT_FILE).stat().st_size,
        }
    retired = data_dir / RETIRED_KEYS_PART
    for public in sorted(retired.glob("*.pem")) if retired.is_dir() else []:
        (dest / "keys").mkdir(mode=0o700, exist_ok=True)
        (dest / RETIRED_KEYS_PART).mkdir(mode=0o700, exist_ok=True)
        name = f"{RETIRED_KEYS_PART}/{public.name}"
        parts[name] = _copy(public, dest / name)

    manifest = {
        "format": MANIFEST_FORMAT,
        "version": software_version(),
        "created_at": datetime.now(UTC).isoformat(),
        "database": {"kind": kind, "part": part},
        "migration_heads": snapshot.heads,
        "audit_head": {"seq": snapshot.audit_seq, "hash": snapshot.audit_hash},
        "counts": snapshot.counts,
        "files": snapshot.blobs,
        "parts": dict(sorted(parts.items())),
    }
    # Written last and renamed into place: a backup cut short has no manifest at all.
    temp = dest / f"{MANIFEST}.tmp"
    with os.fdopen(open_private(temp), "w", encoding="utf-8") as handle:
        handle.write(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    os.replace(temp, dest / MANIFEST)
    return manifest


# --- restore ---------------------------------------------------------------------------


def read_manifest(source: Path) -> dict[str, Any]:
    """The manifest of the backup in ``source``, checked against every part."""
    path = source / MANIFEST
    if not source.is_dir():
        raise BackupError(f"{source} is not a backup directory")
    if not path.is_file():
        raise BackupError(
            f"{source} has no {MANIFEST}: the backup is partial (cut short, or not a backup at all)"
        )
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise BackupError(f"{path} is damaged: not readable JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise BackupError(f"{path} is not a manifest of format {MANIFEST_FORMAT}")
    required = ("database", "migration_heads", "audit_head", "counts", "files", "parts")
    if any(key not in manifest for key in required):
        raise BackupError(
            f"{path} is damaged: it lacks {', '.join(k for k in required if k not in manifest)}"
        )
    parts = manifest["parts"]
    database = manifest["database"]
    if database.get("part") not in parts:
        raise BackupError(f"{path} is damaged: it lists no database part")
    for sha in manifest["files"]:
        if f"{BLOB_DIR}/{sha[:2]}/{sha}" not in parts:
            raise BackupError(f"{path} is damaged: uploaded file {sha} is not among its parts")
    for name, expected in parts.items():
        part = (source / name).resolve()
        if not part.is_relative_to(source.resolve()):
            raise BackupError(f"{path} is damaged: part {name!r} lies outside the backup")
        if not part.is_file():
            raise BackupError(f"the backup is partial: {name} is missing")
        if part.stat().st_size != expected["size"] or file_digest(part) != expected["sha256"]:
            raise BackupError(
                f"the backup is damaged: {name} does not match its SHA-256 in the manifest"
            )
    return manifest


def _check_known_heads(heads: Iterable[str]) -> None:
    from alembic.script import ScriptDirectory

    from server.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    known = {rev.revision for rev in script.walk_revisions()}
    unknown = [head for head in heads if head not in known]
    if unknown:
        raise BackupError(
            f"the backup was made by a newer version (migration "
            f"{', '.join(unknown)} is unknown here): restore it with that version"
        )


def _data_dir_is_empty(data_dir: Path) -> bool:
    return not data_dir.exists() or (data_dir.is_dir() and not any(data_dir.iterdir()))


async def restore(settings: Settings, source: Path) -> dict[str, Any]:
    """Restore the backup in ``source`` into an empty data directory (and database)."""
    manifest = await asyncio.to_thread(read_manifest, source)
    kind = manifest["database"]["kind"]
    target_kind = "sqlite" if settings.is_sqlite else "postgresql"
    if kind != target_kind:
        raise BackupError(
            f"the backup holds a {kind} database but this installation is "
            f"configured for {target_kind} (DIENHONG_DATABASE_URL)"
        )
    _check_known_heads(manifest["migration_heads"])
    data_dir = settings.data_dir
    if not _data_dir_is_empty(data_dir):
        raise BackupError(
            f"the data directory {data_dir} is not empty: restore only into an "
            "empty one (move the old one aside first)"
        )
    checkpoints = checkpoint_path(settings)
    if CHECKPOINT_FILE in manifest["parts"] and checkpoints.exists():
        raise BackupError(
            f"{checkpoints} exists (DIENHONG_AUDIT_CHECKPOINT_PATH): the backup's "
            "checkpoints are restored only where there are none yet"
        )
    if target_kind == "postgresql" and await _pg_table_count(settings):
        raise BackupError(
            f"the database {pg_target(settings.effective_database_url).database}"
            " is not empty: restore only into a new, empty database"
        )

    private_dir(data_dir)
    part = manifest["database"]["part"]
    for name in manifest["parts"]:
        if name == part:
            continue
        key = name.startswith("keys/")
        if key:
            (data_dir / "keys").mkdir(mode=0o700, exist_ok=True)
            (data_dir / name).parent.mkdir(mode=0o700, exist_ok=True)
        to = checkpoints if name == CHECKPOINT_FILE else data_dir / name
        await asyncio.to_thread(_copy, source / name, to)
    if target_kind == "sqlite":
        final = Path(make_url(settings.effective_database_url).database or "")
        temp = final.with_name(final.name + ".restoring")
        await asyncio.to_thread(shutil.copyfile, source / part, private_file(temp))
        os.replace(temp, final)
    else:
        target = pg_target(settings.effective_database_url)
        await _run(
            [
                "pg_restore",
                "--exit-on-error",
                "--no-owner",
                "--no-privileges",
                f"--dbname={target.dsn}",
                str(source / part),
            ],
            target.env,
            "restore PostgreSQL",
        )
    await check_restored(settings, manifest)
    return manifest


async def check_restored(settings: Settings, manifest: dict[str, Any]) -> None:
    """The restored database and files say what the manifest says."""
    from sqlalchemy import text

    from server.audit import verify_chain
    from server.db import Database
    from server.files.storage import ContentStore

    db = Database(settings)
    try:
        async with db.read_session() as session:
            for table, expected in manifest["counts"].items():
                count = (
                    await session.execute(text(f"SELECT count(*) FROM {_quote(table)}"))
                ).scalar_one()
                if count != expected:
                    raise BackupError(
                        f"after the restore {table} has {count} rows, the backup {expected}"
                    )
            report = await verify_chain(session)
            rows = (await session.execute(text("SELECT DISTINCT sha256 FROM files"))).all()
    finally:
        await db.dispose()
    head = manifest["audit_head"]
    if not report.ok:
        raise BackupError(
            f"the restored audit chain is broken at record {report.first_bad_seq}: {report.problem}"
        )
    if (report.records, report.head_hash) != (head["seq"], head["hash"]):
        raise BackupError(
            f"the restored audit chain ends at record {report.records}, the "
            f"backup's at {head['seq']}"
        )
    store = ContentStore(settings.data_dir)
    for (sha,) in rows:
        path = store.blob_path(str(sha))
        if not path.is_file() or file_digest(path) != sha:
            raise BackupError(f"uploaded file {sha} does not read back after the restore")
