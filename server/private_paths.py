"""Everything a node keeps on disk is for the server's own user only.

The data directory holds the database (with the text of every instruction), uploaded
documents and signing keys: directories are 0700 and files 0600, whatever the umask.
SQLite gives its ``-wal`` and ``-shm`` files the mode of the database file, so creating
the database 0600 before SQLite opens it covers them too.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) and make it 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    os.chmod(path, PRIVATE_DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty if missing, and make it 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE_MODE)
    os.close(fd)
    os.chmod(path, PRIVATE_FILE_MODE)
    return path


def private_sqlite(database: Path) -> None:
    """The database file and its WAL and shared memory 0600.

    Only in a directory that exists: a database URL naming a missing directory stays an
    error for SQLite to report, never a directory made here.
    """
    if not database.parent.is_dir():
        return
    private_file(database)
    for suffix in ("-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(database.with_name(database.name + suffix), PRIVATE_FILE_MODE)


def open_private(path: Path) -> int:
    """A new file opened for writing, 0600 from its creation (no window of 0644)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
