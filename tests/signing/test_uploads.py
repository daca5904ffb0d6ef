"""Uploaded PDFs that carry signatures are checked, and their JSON says what was found."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

from pypdf import PdfReader

from meeting.annotations import write_annotations
from server.demo import seed_demo
from server.signing.keys import TokenKey
from server.signing.pades import SigningPolicy, sign_pdf
from server.signing.verify import VerifyPolicy, verify_pdf
from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.harness import RunningServer
from tests.signing.conftest import signing_settings
from tests.signing.documents import (
    change_content,
    corrupt_signature,
    plain_pdf,
    sign_without_checks,
)
from tests.signing.pki import KEY_LABEL, SOFTHSM_MODULE, LoopbackPki


async def upload(server: RunningServer, token: str, data: bytes) -> dict[str, Any]:
    async with server.http(token) as client:
        response = await client.post(
            "/api/v1/files", files={"file": ("van-ban.pdf", data, "application/pdf")}
        )
        assert response.status_code == 201, response.text
        meta = await client.get(f"/api/v1/files/{response.json()['id']}/meta")
    assert meta.json()["signatures"] == response.json()["signatures"]
    return dict(response.json())


async def signed_by_secretary(pki: LoopbackPki) -> bytes:
    signed = await asyncio.to_thread(
        sign_pdf,
        plain_pdf("Công văn số 12"),
        TokenKey(str(SOFTHSM_MODULE), "secretary", KEY_LABEL),
        pki.pin("secretary"),
        SigningPolicy(pki.tsa_url, (pki.arch.get_cert("root"),)),
        field_name="Ky",
        reason="Công văn",
    )
    return signed.pdf


async def test_signed_uploads_are_checked(make_server: MakeServer, pki: LoopbackPki) -> None:
    server = await make_server(**signing_settings(pki))
    await seed_demo(server.ctx, password=DEMO_PASSWORD, communes=1, delegates=1)
    token = await server.login("ward001", DEMO_PASSWORD)

    assert (await upload(server, token, plain_pdf()))["signatures"] == []

    good = await signed_by_secretary(pki)
    [valid] = (await upload(server, token, good))["signatures"]
    assert valid["valid"] is True and valid["problems"] == []
    assert valid["signer_common_name"] == "Nguyễn Thị Thư Ký"
    assert valid["timestamp_valid"] and valid["signing_time"]

    [changed] = (await upload(server, token, change_content(good)))["signatures"]
    assert changed["valid"] is False and changed["changes_after_signing"] == "content"

    [corrupt] = (await upload(server, token, corrupt_signature(good)))["signatures"]
    assert corrupt["valid"] is False and "corrupt" in corrupt["problems"]

    revoked_doc = await asyncio.to_thread(sign_without_checks, pki, "revoked", plain_pdf())
    [revoked] = (await upload(server, token, revoked_doc))["signatures"]
    assert revoked["revoked"] is True and "revoked" in revoked["problems"]

    outsider_doc = await asyncio.to_thread(sign_without_checks, pki, "outsider", plain_pdf())
    [outsider] = (await upload(server, token, outsider_doc))["signatures"]
    assert outsider["trusted"] is False and "untrusted" in outsider["problems"]


async def test_without_trust_roots_nothing_is_trusted(
    make_server: MakeServer, pki: LoopbackPki
) -> None:
    server = await make_server(**signing_settings(pki, signing_trust_roots=""))
    await seed_demo(server.ctx, password=DEMO_PASSWORD, communes=1, delegates=1)
    token = await server.login("ward001", DEMO_PASSWORD)
    [summary] = (await upload(server, token, await signed_by_secretary(pki)))["signatures"]
    assert summary["intact"] is True and summary["trusted"] is False
    assert summary["valid"] is False and "untrusted" in summary["problems"]


async def test_stamped_and_annotated_copies_of_a_signed_pdf_still_validate(
    make_server: MakeServer, pki: LoopbackPki, tmp_path: Path
) -> None:
    server = await make_server(**signing_settings(pki))
    await seed_demo(server.ctx, password=DEMO_PASSWORD, communes=1, delegates=1)
    token = await server.login("ward001", DEMO_PASSWORD)
    original = await signed_by_secretary(pki)
    file_id = (await upload(server, token, original))["id"]
    async with server.http(token) as client:
        response = await client.get(f"/api/v1/files/{file_id}")
    assert response.status_code == 200
    stamped = response.content
    assert stamped.startswith(original)  # an incremental update, not a rewrite
    reader = PdfReader(io.BytesIO(stamped))
    assert reader.metadata is not None and reader.metadata["/DienHongFileId"] == str(file_id)
    assert any(a.get_object()["/Subtype"] == "/Stamp" for a in reader.pages[0]["/Annots"])
    policy = VerifyPolicy((pki.arch.get_cert("root"),), fetch=False)
    [summary] = await asyncio.to_thread(verify_pdf, stamped, policy)
    assert summary["valid"] is True and summary["changes_after_signing"] == "annotations"

    copy = tmp_path / "stamped.pdf"
    copy.write_bytes(stamped)
    marks = [
        (1, "note", {"x": 0.2, "y": 0.3, "text": "Cần xem lại", "color": "#ff0000"}, 1, 1),
        (1, "highlight", {"rects": [[0.1, 0.1, 0.5, 0.15]], "color": "#ffff00"}, 2, 1),
    ]
    annotated = await asyncio.to_thread(write_annotations, copy, marks, "Nguyễn Văn A")
    assert annotated.startswith(stamped)
    [summary] = await asyncio.to_thread(verify_pdf, annotated, policy)
    assert summary["valid"] is True and summary["changes_after_signing"] == "annotations"
    # A page whose content is changed is still caught after the stamp.
    [forged] = await asyncio.to_thread(verify_pdf, change_content(annotated), policy)
    assert forged["valid"] is False and forged["changes_after_signing"] == "content"
