"""After a secret poll closes: nothing on disk may keep the order in which its roll and
box were written (README, "Secret ballots")."""

from __future__ import annotations

import logging

from meeting.polls.runtime import poll_runtime
from server.context import Context

log = logging.getLogger("dienhong.polls")

SECRET_TABLES = ("poll_ballots", "poll_voters")


async def scrub_secret_rows(ctx: Context) -> None:
    """PostgreSQL: VACUUM the roll and the box, so the row versions from before the close
    rewrite (with their telling ``xmin``) do not linger on disk until autovacuum.

    Best effort and outside any transaction (VACUUM cannot run in one). SQLite keeps no
    old row versions in the tables (see README, "Secret ballots", for its WAL file)."""
    if ctx.db.is_sqlite:
        return
    async with ctx.db.write_engine.connect() as conn:
        auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await auto.exec_driver_sql(f"VACUUM {', '.join(SECRET_TABLES)}")


async def run_scrubber(ctx: Context) -> None:
    """Scrub after each close of a secret poll (several closes at once: one scrub)."""
    rt = poll_runtime(ctx)
    while True:
        await rt.scrub_wanted.wait()
        rt.scrub_wanted.clear()
        try:
            await scrub_secret_rows(ctx)
        except Exception:
            log.exception("vacuuming the ballot tables after a secret poll failed")
