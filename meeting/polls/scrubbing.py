"""After a secret poll closes: nothing on disk may keep the order in which its roll and
box were written (README, "Secret ballots")."""

from __future__ import annotations

import asyncio
import logging

from meeting.polls.runtime import poll_runtime
from server.context import Context

log = logging.getLogger("dienhong.polls")

SECRET_TABLES = ("poll_ballots", "poll_voters", "poll_sealed_ballots")
# Tries of the SQLite checkpoint (readers still on an old snapshot make it give up early),
# and the pause between two.
CHECKPOINT_ATTEMPTS = 50
CHECKPOINT_RETRY_SECS = 0.1


async def scrub_secret_rows(ctx: Context) -> None:
    """After a secret poll's close has committed, leave nothing of the order of writing.

    PostgreSQL: VACUUM the roll, the box and the seals, so the row versions from before
    the close rewrite (with their telling ``xmin``) do not linger on disk until
    autovacuum (outside any transaction: VACUUM cannot run in one).

    SQLite: checkpoint the write-ahead log into the database and truncate it
    (``wal_checkpoint(TRUNCATE)``), so the frames of the commits made while the poll was
    open are gone; deleted seals were already zeroed (``secure_delete``, see
    ``server.db``). A reader holding an old snapshot keeps the checkpoint from finishing:
    it is tried again until it does."""
    if not ctx.db.is_sqlite:
        async with ctx.db.write_engine.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await auto.exec_driver_sql(f"VACUUM {', '.join(SECRET_TABLES)}")
        return
    for _ in range(CHECKPOINT_ATTEMPTS):
        if await ctx.db.checkpoint_wal():
            return
        await asyncio.sleep(CHECKPOINT_RETRY_SECS)
    log.warning(
        "the write-ahead log could not be truncated after a secret poll closed; "
        "it will be at the next close or restart"
    )


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
