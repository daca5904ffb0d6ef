"""Applying Alembic migrations programmatically (``dienhong migrate`` and ``serve``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import create_async_engine

from server.settings import Settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str = "") -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    if url:
        config.set_main_option("sqlalchemy.url", url)
    return config


def _upgrade(connection: Any, config: Config, target: str) -> None:
    config.attributes["connection"] = connection
    command.upgrade(config, target)


def _current(connection: Any) -> str | None:
    heads = MigrationContext.configure(connection).get_current_heads()
    return ",".join(sorted(heads)) or None


async def migrate(settings: Settings, target: str = "heads") -> tuple[str | None, str | None]:
    """Bring the database up to ``target``; returns (revision before, revision after)."""
    url = settings.effective_database_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url)
    config = alembic_config(url)
    try:
        if url.startswith("sqlite"):
            # Switch the file to WAL here, alone: switching needs an exclusive lock that
            # a running server's connections would contend for.
            async with engine.connect() as conn:
                await conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        async with engine.begin() as conn:
            before = await conn.run_sync(_current)
            await conn.run_sync(_upgrade, config, target)
            after = await conn.run_sync(_current)
    finally:
        await engine.dispose()
    return before, after


def head_revisions() -> tuple[str, ...]:
    """Each feature's migrations form a branch off the core; all heads are applied."""
    return tuple(ScriptDirectory.from_config(alembic_config()).get_heads())
