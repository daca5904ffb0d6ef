"""Each closed poll's result sheet is sealed by the organisation, automatically."""

from __future__ import annotations

import asyncio
import io
import re

import httpx
from pypdf import PdfReader
from sqlalchemy import select

from server.audit import AuditRecord
from server.signing.verify import VerifyPolicy, verify_pdf
from tests.conftest import MakeServer
from tests.harness import eventually
from tests.polls.conftest import build_assembly
from tests.signing.conftest import signing_settings
from tests.signing.pki import LoopbackPki


async def test_closed_poll_result_is_sealed(make_server: MakeServer, pki: LoopbackPki) -> None:
    server = await make_server(**signing_settings(pki))
    a = await build_assembly(server, delegates=3, absent=0)
    try:
        poll = await a.open_poll(title="Thông qua Nghị quyết về ngân sách")
        for member, choice in zip(a.delegates, ["yes", "yes", "no", "abstain"], strict=True):
            assert (await a.vote(member, poll["id"], choice)).status_code == 201
        assert (await a.close_poll(poll["id"])).status_code == 200
    finally:
        await a.close()
    path = f"/api/v1/polls/{poll['id']}/result.pdf"
    async with server.http(a.delegates[1].token) as client:
        # Sealing runs in the background after the close.
        response = await eventually(lambda: _sealed(client, path), "the sealed result sheet")
    sheet = response.content
    text = re.sub(
        r"\s+", " ", " ".join(p.extract_text() for p in PdfReader(io.BytesIO(sheet)).pages)
    )
    for expected in [
        "PHIẾU KẾT QUẢ BIỂU QUYẾT",
        "Thông qua Nghị quyết về ngân sách",
        "Tán thành: 2",
        "Không tán thành: 1",
        "Quá nửa tổng số đại biểu",
        "Mã kiểm tra các phiếu",
    ]:
        assert expected in text, expected
    [summary] = await asyncio.to_thread(
        verify_pdf, sheet, VerifyPolicy((pki.arch.get_cert("root"),), fetch=False)
    )
    assert summary["valid"] and summary["signer_common_name"] == "HĐND Thành phố"
    async with server.ctx.read() as session:
        [record] = (
            (
                await session.execute(
                    select(AuditRecord).where(AuditRecord.action == "document.signed")
                )
            )
            .scalars()
            .all()
        )
    assert record.subject == f"poll:{poll['id']}"
    assert record.details["certificate_sha256"] == summary["certificate_sha256"]
    assert record.details["kind"] == "poll_result"


async def test_without_an_organisation_key_nothing_is_sealed(
    make_server: MakeServer, pki: LoopbackPki
) -> None:
    server = await make_server(**signing_settings(pki, signing_org_token_label=""))
    a = await build_assembly(server, delegates=2, absent=0)
    try:
        poll = await a.open_poll(title="Biểu quyết")
        assert (await a.close_poll(poll["id"])).status_code == 200
    finally:
        await a.close()
    async with server.http(a.delegates[0].token) as client:
        response = await client.get(f"/api/v1/polls/{poll['id']}/result.pdf")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "result_not_sealed"


async def _sealed(client: httpx.AsyncClient, path: str) -> httpx.Response | None:
    response = await client.get(path)
    return response if response.status_code == 200 else None
