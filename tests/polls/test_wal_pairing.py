"""An attacker with copies of the SQLite database and its write-ahead log tries to pair
the voters of a secret poll with their ballots, by replaying the log commit by commit.

Voters vote one at a time, so each roll entry has a commit of its own: the worst case.
Copies are taken while the vote runs, right after the close, and once the close's
scrub has run. None of them may pair a voter with a receipt or a choice.
"""

from __future__ import annotations

import shutil
import sqlite3
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest

from meeting.polls.runtime import poll_runtime
from tests.harness import RunningServer, eventually
from tests.polls.conftest import build_assembly

WAL_HEADER = 32
FRAME_HEADER = 24


@dataclass
class Commit:
    voters: set[int]
    receipts: set[str]
    slots: set[str]


def _rows(path: Path, poll_id: int) -> tuple[set[int], set[str], set[str]]:
    db = sqlite3.connect(path)
    try:
        voters = {
            r[0]
            for r in db.execute("SELECT user_id FROM poll_voters WHERE poll_id = ?", (poll_id,))
        }
        receipts = {
            r[0]
            for r in db.execute("SELECT receipt FROM poll_ballots WHERE poll_id = ?", (poll_id,))
        }
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        slots = (
            {
                r[0]
                for r in db.execute(
                    "SELECT slot FROM poll_sealed_ballots WHERE poll_id = ?", (poll_id,)
                )
            }
            if "poll_sealed_ballots" in tables
            else set()
        )
    finally:
        db.close()
    return voters, receipts, slots


def replay(main: Path, wal: Path, poll_id: int, work: Path) -> list[Commit]:
    """Apply the log's frames to a copy of the main file, commit by commit, and list what
    each commit added to the roll, the box and the seals."""
    image = bytearray(main.read_bytes())
    # Read the replayed copies as plain rollback-journal databases.
    image[18:20] = b"\x01\x01"
    log = wal.read_bytes() if wal.exists() else b""
    commits: list[Commit] = []
    before = _snapshot(image, poll_id, work, 0)
    if len(log) < WAL_HEADER:
        return commits
    page_size = struct.unpack(">I", log[8:12])[0]
    salts = log[16:24]
    offset, number = WAL_HEADER, 0
    while offset + FRAME_HEADER + page_size <= len(log):
        page_no, db_pages = struct.unpack(">II", log[offset : offset + 8])
        if log[offset + 8 : offset + 16] != salts:
            break  # frames left over from before the last reset of the log
        page = log[offset + FRAME_HEADER : offset + FRAME_HEADER + page_size]
        start = (page_no - 1) * page_size
        if len(image) < start + page_size:
            image.extend(b"\0" * (start + page_size - len(image)))
        image[start : start + page_size] = page
        if page_no == 1:
            image[18:20] = b"\x01\x01"
        offset += FRAME_HEADER + page_size
        if db_pages:
            number += 1
            del image[db_pages * page_size :]
            after = _snapshot(image, poll_id, work, number)
            commits.append(Commit(after[0] - before[0], after[1] - before[1], after[2] - before[2]))
            before = after
    return commits


def _snapshot(
    image: bytearray, poll_id: int, work: Path, number: int
) -> tuple[set[int], set[str], set[str]]:
    path = work / f"replay-{number}.sqlite3"
    path.write_bytes(bytes(image))
    return _rows(path, poll_id)


def copy_files(data: Path, into: Path) -> tuple[Path, Path]:
    into.mkdir(parents=True)
    main = into / "db.sqlite3"
    wal = into / "db.sqlite3-wal"
    shutil.copyfile(data / "dienhong.sqlite3", main)
    if (data / "dienhong.sqlite3-wal").exists():
        shutil.copyfile(data / "dienhong.sqlite3-wal", wal)
    return main, wal


async def test_the_log_does_not_pair_voters_with_ballots(
    server: RunningServer, tmp_path: Path
) -> None:
    if not server.ctx.db.is_sqlite:
        pytest.skip("the SQLite write-ahead log (PostgreSQL: see test_secrecy)")
    data = Path(server.settings.data_dir)
    a = await build_assembly(server, delegates=8, absent=0)
    poll = await a.open_poll(secret=True)
    pid = poll["id"]
    truth: dict[int, str] = {}
    for i, member in enumerate(a.delegates):
        response = await a.vote(member, pid, "yes" if i % 3 else "no")
        assert response.status_code == 201, response.text
        truth[member.id] = response.json()["receipt"]
    during = copy_files(data, tmp_path / "during")
    closed = await a.close_poll(pid)
    assert closed.status_code == 200
    after_close = copy_files(data, tmp_path / "after-close")
    seen_voters: set[int] = set()
    for name, (main, log) in {"during": during, "after-close": after_close}.items():
        work = tmp_path / f"work-{name}"
        work.mkdir()
        for commit in replay(main, log, pid, work):
            seen_voters |= commit.voters
            # The attack: a commit that adds roll entries and readable ballots together.
            if commit.voters:
                assert not commit.receipts & {truth[v] for v in commit.voters}, name
                assert not commit.receipts, (name, commit)
    wal = data / "dienhong.sqlite3-wal"

    async def scrubbed() -> bool:
        return not poll_runtime(server.ctx).scrub_wanted.is_set() and (
            not wal.exists() or wal.stat().st_size == 0
        )

    await eventually(scrubbed, "the scrub after the secret close")
    after_scrub = copy_files(data, tmp_path / "after-scrub")
    # The log did hold the votes one commit each (the attack had its material)...
    assert seen_voters == set(truth)
    # ...and after the scrub nothing of the vote's order is left: the log is empty and no
    # seal of the vote is anywhere in the database file (zeroed when deleted).
    (tmp_path / "work-after-scrub").mkdir()
    assert replay(*after_scrub, pid, tmp_path / "work-after-scrub") == []
    main_bytes = after_scrub[0].read_bytes()
    seals = _seals(during, pid, tmp_path / "seals")
    assert seals, "the ballots were stored sealed while the poll was open"
    assert not any(seal in main_bytes for seal in seals)
    await a.close()


def _seals(files: tuple[Path, Path], poll_id: int, work: Path) -> list[bytes]:
    """Every seal the log and the file held while the vote ran (read from the frames)."""
    work.mkdir()
    main, wal = files
    merged = work / "merged.sqlite3"
    shutil.copyfile(main, merged)
    if wal.exists():
        shutil.copyfile(wal, work / "merged.sqlite3-wal")
    db = sqlite3.connect(merged)
    try:
        return [
            bytes(r[0])
            for r in db.execute(
                "SELECT sealed FROM poll_sealed_ballots WHERE poll_id = ?", (poll_id,)
            )
        ]
    finally:
        db.close()
