"""Audit checkpoints signed by the organisation's seal too: checked by ``verify-audit``
against the trust roots (and by openssl alone), printed at the end of the minutes."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader
from sqlalchemy import select, update

from meeting.minutes import build_minutes_pdf
from server.audit import AuditHead, AuditRecord, record_hash
from server.audit_anchor import (
    Checkpoint,
    NodeKeySigner,
    checkpoint_now,
    checkpoint_path,
    read_checkpoints,
)
from server.auth.principal import Principal
from server.org.models import User
from server.signing.checkpoints import OrganisationCountersigner, organisation_countersigner
from server.signing.keys import FileKey
from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.harness import RunningServer
from tests.server.test_cli import on
from tests.signing.conftest import closed_meeting, signing_settings
from tests.signing.pki import P12_PASSPHRASE, LoopbackPki

ORG = "HĐND Thành phố"


async def sealed_server(
    make_server: MakeServer, pki: LoopbackPki, **overrides: Any
) -> RunningServer:
    # Checkpoints are written by the test, not by the periodic job.
    server = await make_server(
        **signing_settings(pki, audit_checkpoint_interval_secs=0, **overrides)
    )
    await closed_meeting(server)
    return server


async def seal_checkpoint(server: RunningServer) -> Checkpoint:
    countersigner = organisation_countersigner(server.settings)
    assert countersigner is not None
    written = await checkpoint_now(
        server.ctx, NodeKeySigner.for_node(server.settings), countersigner
    )
    assert written is not None
    return written


def lines(server: RunningServer) -> list[dict[str, Any]]:
    return [json.loads(line) for line in checkpoint_path(server.settings).read_text().splitlines()]


def write_lines(server: RunningServer, found: list[dict[str, Any]]) -> None:
    checkpoint_path(server.settings).write_text("".join(json.dumps(line) + "\n" for line in found))


def resign_by_node(server: RunningServer, line: dict[str, Any]) -> None:
    """What someone holding the node's key (on the server's disk) can do to a line."""
    node = NodeKeySigner.for_node(server.settings)
    fields = {k: line[k] for k in ("seq", "hash", "at", "key_id", "algorithm")}
    line["signature"] = base64.b64encode(node.sign(Checkpoint(**fields).payload())).decode()


def signed_bytes(line: str) -> bytes:
    """The signed bytes of a checkpoint line the way the README shows (jq)."""
    return subprocess.run(
        ["jq", "-jcS", "{algorithm, at, hash, key_id, seq}"],
        input=line.encode(),
        capture_output=True,
        check=True,
    ).stdout


async def verify(server: RunningServer, pki: LoopbackPki, *roots: str) -> Any:
    bundle = pki.trust_bundle(*(roots or ("root",)))
    return await on(server, "verify-audit", "--trust-roots", str(bundle))


async def test_checkpoints_carry_the_organisations_signature_and_verify(
    make_server: MakeServer,
    pki: LoopbackPki,
    tmp_path: Path,
) -> None:
    server = await sealed_server(make_server, pki)
    first = await seal_checkpoint(server)
    await server.login("chair", DEMO_PASSWORD)
    second = await seal_checkpoint(server)
    assert first.seq < second.seq and second.org_signature
    assert read_checkpoints(checkpoint_path(server.settings))[-1] == second

    held = await verify(server, pki)
    assert held.code == 0, held.err
    assert "2 signed checkpoints agree" in held.out
    assert f"2 checkpoints also signed by the organisation, up to record {second.seq}" in held.out
    assert ORG in held.out

    # Anyone can check the organisation's signature with openssl alone (the README's steps).
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    payload = tmp_path / "checkpoint.json"
    payload.write_bytes(second.payload())
    if shutil.which("jq") is not None:
        # The README's way to the signed bytes from a line of the file gives the same bytes.
        line = checkpoint_path(server.settings).read_text().splitlines()[-1]
        assert signed_bytes(line) == second.payload()
    signature = tmp_path / "checkpoint.p7s"
    signature.write_bytes(base64.b64decode(second.org_signature))

    def openssl(roots: Path, content: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "openssl",
                "cms",
                "-verify",
                "-binary",
                "-inform",
                "DER",
                "-in",
                str(signature),
                "-content",
                str(content),
                "-CAfile",
                str(roots),
                "-purpose",
                "any",
                "-out",
                "/dev/null",
            ],
            capture_output=True,
            text=True,
            check=False,
        )

    assert openssl(pki.trust_bundle("root"), payload).returncode == 0
    assert openssl(pki.trust_bundle("outsider-root"), payload).returncode != 0
    altered = tmp_path / "altered.json"
    altered.write_bytes(second.payload().replace(b'"seq":', b'"seq":1'))
    assert openssl(pki.trust_bundle("root"), altered).returncode != 0


async def test_the_server_seals_its_checkpoints(make_server: MakeServer, pki: LoopbackPki) -> None:
    # The periodic job runs once at start (an empty chain then) and once at shutdown.
    server = await make_server(**signing_settings(pki, audit_checkpoint_interval_secs=3600))
    await closed_meeting(server)
    await server.stop()
    last = read_checkpoints(checkpoint_path(server.settings))[-1]
    assert last.org_signature
    held = await verify(server, pki)
    assert held.code == 0 and "also signed by the organisation" in held.out, held.err


async def test_a_rewritten_chain_resigned_with_the_node_key_is_caught(
    make_server: MakeServer,
    pki: LoopbackPki,
) -> None:
    server = await sealed_server(make_server, pki)
    await seal_checkpoint(server)
    async with server.ctx.read() as session:
        records = list(
            (await session.execute(select(AuditRecord).order_by(AuditRecord.seq))).scalars()
        )
    # Rewrite record 2, recompute the chain and the head...
    prev = records[0].hash
    async with server.ctx.db.write_session() as session:
        for row in records[1:]:
            subject = "user:someone-else" if row.seq == 2 else row.subject
            digest = record_hash(
                row.seq, row.at, row.actor_id, row.action, subject, row.details, prev
            )
            await session.execute(
                update(AuditRecord)
                .where(AuditRecord.seq == row.seq)
                .values(subject=subject, prev_hash=prev, hash=digest)
            )
            prev = digest
        await session.execute(update(AuditHead).values(hash=prev))
    # ...and the checkpoint with it, signed again with the node's key.
    found = lines(server)
    found[-1]["hash"] = prev
    resign_by_node(server, found[-1])
    write_lines(server, found)
    caught = await verify(server, pki)
    assert caught.code == 1, caught.out
    assert f"the checkpoint of record {records[-1].seq}" in caught.err
    assert "does not verify" in caught.err and ORG in caught.err

    # Stripping the organisation's signature from the newest line does not help either,
    # once an earlier checkpoint carries one (the node's signature does not cover it).
    write_lines(server, [])
    await seal_checkpoint(server)
    await server.login("chair", DEMO_PASSWORD)
    await seal_checkpoint(server)
    found = lines(server)
    del found[-1]["org_signature"]
    write_lines(server, found)
    stripped = await verify(server, pki)
    assert stripped.code == 1
    assert "lacks the organisation's signature" in stripped.err, stripped.err


async def test_a_signature_by_another_key_or_garbage_is_refused(
    make_server: MakeServer,
    pki: LoopbackPki,
) -> None:
    server = await sealed_server(make_server, pki)
    await seal_checkpoint(server)
    found = lines(server)
    payload = Checkpoint(
        **{k: found[-1][k] for k in ("seq", "hash", "at", "key_id", "algorithm")}
    ).payload()
    # A well-formed signature of the right bytes by a certificate of another CA.
    outsider = OrganisationCountersigner(
        FileKey(str(pki.pkcs12("outsider"))), P12_PASSPHRASE.decode()
    )
    signed = await asyncio.to_thread(outsider.countersign, payload)
    found[-1]["org_signature"] = base64.b64encode(signed).decode()
    write_lines(server, found)
    untrusted = await verify(server, pki)
    assert untrusted.code == 1
    assert "Người ngoài was not made with a certificate of the trusted roots" in untrusted.err

    found[-1]["org_signature"] = base64.b64encode(b"not a signature").decode()
    write_lines(server, found)
    garbage = await verify(server, pki)
    assert garbage.code == 1 and "cannot be read" in garbage.err, garbage.err


async def test_a_wrong_or_missing_trust_root_is_an_error(
    make_server: MakeServer,
    pki: LoopbackPki,
    tmp_path: Path,
) -> None:
    server = await sealed_server(make_server, pki)
    await seal_checkpoint(server)
    wrong = await verify(server, pki, "outsider-root")
    assert wrong.code == 1
    assert (
        f"signature by {ORG} was not made with a certificate of the trusted roots" in wrong.err
    ), wrong.err
    # Without any trust roots the organisation's signature cannot pass unchecked.
    none = await on(server, "verify-audit")
    assert none.code == 1 and "no trust roots are configured" in none.err, none.err
    unreadable = await on(server, "verify-audit", "--trust-roots", str(tmp_path / "missing"))
    assert unreadable.code == 1 and "trust roots unreadable" in unreadable.err


async def test_an_absent_seal_writes_no_checkpoint(
    make_server: MakeServer,
    pki: LoopbackPki,
) -> None:
    server = await sealed_server(make_server, pki, signing_org_token_label="no-such-token")
    before = (
        checkpoint_path(server.settings).read_text()
        if checkpoint_path(server.settings).exists()
        else ""
    )
    countersigner = organisation_countersigner(server.settings)
    assert countersigner is not None
    assert (
        await checkpoint_now(server.ctx, NodeKeySigner.for_node(server.settings), countersigner)
        is None
    )
    after = (
        checkpoint_path(server.settings).read_text()
        if checkpoint_path(server.settings).exists()
        else ""
    )
    assert after == before


def pdf_text(document: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(document)).pages)


async def test_the_minutes_print_the_last_checkpoint(
    make_server: MakeServer,
    pki: LoopbackPki,
) -> None:
    server = await make_server(**signing_settings(pki, audit_checkpoint_interval_secs=0))
    city, meeting_id = await closed_meeting(server)
    async with server.ctx.read() as session:
        user = await session.get(User, city.chair_id)
    assert user is not None
    chair = Principal.of(user)
    unanchored, _data = await build_minutes_pdf(server.ctx, chair, meeting_id)
    assert "Chưa có điểm neo nào của nhật ký kiểm toán." in pdf_text(unanchored)

    await seal_checkpoint(server)
    await server.login("chair", DEMO_PASSWORD)
    last = await seal_checkpoint(server)
    document, _data = await build_minutes_pdf(server.ctx, chair, meeting_id)
    text = pdf_text(document)
    assert f"Điểm neo cuối của nhật ký kiểm toán: bản ghi số {last.seq}" in text
    assert last.hash in text.replace("\n", "")
    assert f"Ký bởi tổ chức: {ORG}" in text
    assert last.key_id in text
    # The checkpoint comes last, after the head at printing and before the signatures.
    assert (
        text.index("Nhật ký kiểm toán tại thời điểm in")
        < text.index("Điểm neo cuối")
        < text.index("CHỦ TỌA")
    )
