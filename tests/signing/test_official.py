"""Instructions issued as official documents, signed by the issuer before they go out."""

from __future__ import annotations

import io
import re

from pypdf import PdfReader
from sqlalchemy import func, select

from messaging.models import Directive
from server.audit import AuditRecord
from server.demo import seed_demo
from server.files.models import StoredFile
from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.signing.conftest import signing_settings
from tests.signing.pki import LoopbackPki


async def counts(server) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    async with server.ctx.read() as session:
        directives = (
            await session.execute(select(func.count()).select_from(Directive))
        ).scalar_one()
        files = (await session.execute(select(func.count()).select_from(StoredFile))).scalar_one()
        signed = (
            await session.execute(
                select(func.count())
                .select_from(AuditRecord)
                .where(AuditRecord.action == "document.signed")
            )
        ).scalar_one()
    return int(directives), int(files), int(signed)


async def test_official_instruction_is_signed_by_its_issuer(
    make_server: MakeServer, pki: LoopbackPki
) -> None:
    server = await make_server(**signing_settings(pki))
    city, _ = await seed_demo(server.ctx, password=DEMO_PASSWORD, communes=2, delegates=1)
    standing = await server.login("standing", DEMO_PASSWORD)
    ward = await server.login("ward001", DEMO_PASSWORD)
    request = {
        "title": "Về việc ứng phó bão số 3",
        "number": "12/CĐ-HĐND",
        "body": "Yêu cầu các xã, phường triển khai ngay phương án sơ tán dân.",
        "urgency": "express",
        "targets": {"unit_ids": city.commune_unit_ids},
    }
    before = await counts(server)
    async with server.http(standing) as client:
        issuer_name = (await client.get("/api/v1/me")).json()["display_name"]
        wrong = await client.post("/api/v1/directives/official", json=request | {"pin": "0000"})
        assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "wrong_pin"
        assert await counts(server) == before
        missing = await client.post("/api/v1/directives/official", json=request)
        assert missing.status_code == 400
        response = await client.post(
            "/api/v1/directives/official", json=request | {"pin": pki.pin("standing")}
        )
        assert response.status_code == 201, response.text
    issued = response.json()
    assert issued["recipient_count"] >= 2
    [signature] = issued["signatures"]
    assert signature["valid"] and signature["signer_common_name"] == "Hoàng Văn Thường Trực"
    async with server.http(ward) as client:
        item = (await client.get(f"/api/v1/directives/{issued['id']}")).json()
        assert [a["id"] for a in item["attachments"]] == [issued["file_id"]]
        meta = (await client.get(f"/api/v1/files/{issued['file_id']}/meta")).json()
        assert meta["signatures"] == issued["signatures"]
        copy = (await client.get(f"/api/v1/files/{issued['file_id']}")).content
    text = re.sub(
        r"\s+", " ", " ".join(p.extract_text() for p in PdfReader(io.BytesIO(copy)).pages)
    )
    for expected in [
        "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM",
        "Số: 12/CĐ-HĐND",
        "HỎA TỐC",
        "Về việc ứng phó bão số 3",
        "Kính gửi:",
        "NGƯỜI KÝ",
        issuer_name,
        "Hà Nội, ngày",
    ]:
        assert expected in text, expected
