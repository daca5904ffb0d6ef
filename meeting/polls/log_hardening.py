"""Database drivers print bound parameters (receipts, choices, retry checks) at debug
level; a server run at DEBUG must not write a secret ballot to its log."""

from __future__ import annotations

import logging

from server.context import Context

# Database libraries that print every statement with its bound parameters (receipts,
# choices, retry checks) at these levels and below. A server run with DIENHONG_LOG_LEVEL=DEBUG
# must not write a secret ballot to its log, so they never go below these floors.
PARAMETER_LOGGERS = {
    "aiosqlite": logging.INFO,
    "sqlalchemy.engine": logging.WARNING,
    "asyncpg": logging.INFO,
}


async def keep_ballots_out_of_logs(ctx: Context) -> None:
    """Start-up: raise the level of loggers that would print SQL parameters."""
    for name, floor in PARAMETER_LOGGERS.items():
        logger = logging.getLogger(name)
        # Explicit, so turning the root logger to DEBUG later does not lower it either.
        logger.setLevel(max(floor, logger.getEffectiveLevel()))
