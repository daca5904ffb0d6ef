"""``dienhong rotate-key``: a new node key after a backup (or a disk) left the operators' hands.

Whoever holds the node key signs tokens every node accepts, the administrator's included.
Rotated with the nodes stopped (never under a running one), every session signed before
is refused once they start again, the audit checkpoints the old key signed still verify
(its public half is kept, and a backup carries it), and a key that an open secret poll's
sealed ballots still need is never replaced.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from server.auth.tokens import (
    RETIRED_KEYS_PART,
    SIGNING_KEY_PART,
    KeyRotationError,
    load_or_create_signing_key,
    rotate_signing_key,
)
from server.backup import MANIFEST
from tests import harness
from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.harness import RunningServer
from tests.polls.conftest import build_assembly
from tests.server.support import small_city
from tests.server.test_backup import empty_target  # noqa: F401  (a fixture)
from tests.server.test_cli import dienhong


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_a_new_key_ends_every_session_and_what_the_old_one_signed_still_verifies(
    make_server: MakeServer,
    empty_target: tuple[Path, str],  # noqa: F811
    tmp_path: Path,
    backend: str,
) -> None:
    server = await make_server()
    await small_city(server)
    token = await server.login("standing", DEMO_PASSWORD)
    data_dir, url = server.settings.data_dir, server.settings.database_url
    key_path = data_dir / SIGNING_KEY_PART
    before = key_path.read_bytes()
    # Never under a running node: it would go on signing (and sealing) with the old key.
    run = await dienhong(data_dir, url, "rotate-key")
    assert run.code == 1 and "a node is serving" in run.err, run.err
    assert key_path.read_bytes() == before
    await server.stop()

    run = await dienhong(data_dir, url, "rotate-key")
    assert run.code == 0, run.err
    assert "Start every node again" in run.out
    assert key_path.read_bytes() != before and _mode(key_path) == 0o600
    [retired] = (data_dir / RETIRED_KEYS_PART).glob("*.pem")
    assert b"PRIVATE" not in retired.read_bytes()
    assert _mode(data_dir / RETIRED_KEYS_PART) == 0o700
    # The checkpoint the old key signed when the server started still verifies.
    audit = await dienhong(data_dir, url, "verify-audit")
    assert audit.code == 0, audit.err
    assert "1 signed checkpoints agree" in audit.out

    again = RunningServer(harness.test_settings(data_dir, url, backend), None, None)
    await again.start()
    try:
        async with again.http(token) as client:
            refused = await client.get("/api/v1/me")
        assert refused.status_code == 401, refused.text
        fresh = await again.login("standing", DEMO_PASSWORD)
        async with again.http(fresh) as client:
            assert (await client.get("/api/v1/me")).status_code == 200
    finally:
        await again.stop()
    # Checkpoints of both keys, side by side in one file.
    audit = await dienhong(data_dir, url, "verify-audit")
    assert audit.code == 0, audit.err
    assert "2 signed checkpoints agree" in audit.out

    # A backup carries the retired key: the restored installation verifies too.
    dest = tmp_path / "backup"
    backup = await dienhong(data_dir, url, "backup", str(dest))
    assert backup.code == 0, backup.err
    assert f"{RETIRED_KEYS_PART}/{retired.name}" in (dest / MANIFEST).read_text()
    restored_dir, restored_url = empty_target
    restored = await dienhong(restored_dir, restored_url, "restore", str(dest))
    assert restored.code == 0, restored.err
    assert (restored_dir / RETIRED_KEYS_PART / retired.name).read_bytes() == retired.read_bytes()
    assert _mode(restored_dir / "keys") == 0o700
    audit = await dienhong(restored_dir, restored_url, "verify-audit")
    assert audit.code == 0, audit.err
    assert "2 signed checkpoints agree" in audit.out


async def test_the_key_an_open_secret_poll_needs_is_not_replaced(make_server: MakeServer) -> None:
    server = await make_server()
    assembly = await build_assembly(server)
    try:
        poll = await assembly.open_poll(secret=True)
        voted = await assembly.vote(assembly.delegates[0], poll["id"], "yes")
        assert voted.status_code == 201, voted.text
    finally:
        await assembly.close()
    data_dir, url = server.settings.data_dir, server.settings.database_url
    before = (data_dir / SIGNING_KEY_PART).read_bytes()
    await server.stop()

    run = await dienhong(data_dir, url, "rotate-key")
    assert run.code == 1
    assert "1 sealed ballot(s) of an open secret poll" in run.err
    assert (data_dir / SIGNING_KEY_PART).read_bytes() == before
    assert not (data_dir / RETIRED_KEYS_PART).exists()


def test_a_key_from_the_environment_or_no_key_is_not_rotated(tmp_path: Path) -> None:
    settings = harness.test_settings(tmp_path / "data", "", "sqlite")
    with pytest.raises(KeyRotationError, match="nothing to rotate"):
        rotate_signing_key(settings)
    load_or_create_signing_key(settings)
    pem = (tmp_path / "data" / SIGNING_KEY_PART).read_text()
    with pytest.raises(KeyRotationError, match="DIENHONG_JWT_PRIVATE_KEY"):
        rotate_signing_key(settings.with_overrides(jwt_private_key=pem))
    assert (tmp_path / "data" / SIGNING_KEY_PART).read_text() == pem
