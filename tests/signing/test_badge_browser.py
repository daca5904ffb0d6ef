"""A delegate's tablet shows whether the document on screen is validly signed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from server.demo import seed_demo
from server.signing.keys import TokenKey
from server.signing.pades import SigningPolicy, sign_pdf
from tests.browser.conftest import TABLET, shot, signed_in, wait_online
from tests.browser.conftest import browser as browser  # the Chromium fixture
from tests.browser.documents import council_pdf
from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.signing.conftest import signing_settings
from tests.signing.documents import change_content
from tests.signing.pki import KEY_LABEL, SOFTHSM_MODULE, LoopbackPki

pytestmark = pytest.mark.browser


async def test_delegate_sees_the_signature_badge(
    make_server: MakeServer, pki: LoopbackPki, browser: Any
) -> None:
    server = await make_server(**signing_settings(pki))
    city, _ = await seed_demo(server.ctx, password=DEMO_PASSWORD, communes=1, delegates=2)
    signed = (
        await asyncio.to_thread(
            sign_pdf,
            council_pdf(2),
            TokenKey(str(SOFTHSM_MODULE), "secretary", KEY_LABEL),
            pki.pin("secretary"),
            SigningPolicy(pki.tsa_url, (pki.arch.get_cert("root"),)),
            field_name="Ky",
            reason="Tờ trình",
        )
    ).pdf
    chair = await server.login("chair", DEMO_PASSWORD)
    async with server.http(chair) as api:
        ids = []
        for name, data in (
            ("to-trinh-ky-so.pdf", signed),
            ("to-trinh-bi-sua.pdf", change_content(signed)),
        ):
            upload = await api.post(
                "/api/v1/files", files={"file": (name, data, "application/pdf")}
            )
            assert upload.status_code == 201, upload.text
            ids.append(upload.json()["id"])
        meeting = (
            await api.post(
                "/api/v1/meetings",
                json={
                    "title": "Kỳ họp chuyên đề",
                    "starts_at": "2026-11-23T08:00:00+07:00",
                    "chair_ids": [city.chair_id],
                    "delegate_ids": city.delegate_ids,
                    "secretary_ids": [city.secretary_id],
                },
            )
        ).json()["id"]
        item = (
            await api.post(
                f"/api/v1/meetings/{meeting}/agenda",
                json={"title": "Tờ trình", "document_ids": ids},
            )
        ).json()["id"]
        assert (await api.post(f"/api/v1/meetings/{meeting}/start")).status_code == 200

        async def present(file_id: int) -> None:
            response = await api.post(
                f"/api/v1/meetings/{meeting}/presentation",
                json={"agenda_item_id": item, "document_id": file_id, "page": 1},
            )
            assert response.status_code == 200, response.text

        await present(ids[0])
        _, page = await signed_in(server, browser, "delegate001", viewport=TABLET)
        await page.goto(f"{server.url}/app/delegate/#meeting/{meeting}")
        await wait_online(page)
        badge = page.locator("#viewer .signature-badge[data-valid=true]")
        await badge.wait_for()
        assert await badge.inner_text() == "Đã ký số: Nguyễn Thị Thư Ký — hợp lệ"
        await shot(page, "delegate-signature-valid")

        await present(ids[1])
        forged = page.locator("#viewer .signature-badge[data-valid=false]")
        await forged.wait_for()
        assert await forged.inner_text() == (
            "Đã ký số: Nguyễn Thị Thư Ký — không hợp lệ: tài liệu bị sửa nội dung sau khi ký"
        )
        await shot(page, "delegate-signature-invalid")
    assert page.js_errors == []


async def test_ward_receives_a_signed_instruction_shown_as_valid(
    make_server: MakeServer, pki: LoopbackPki, browser: Any
) -> None:
    server = await make_server(**signing_settings(pki))
    city, _ = await seed_demo(server.ctx, password=DEMO_PASSWORD, communes=2, delegates=1)
    standing = await server.login("standing", DEMO_PASSWORD)
    async with server.http(standing) as api:
        response = await api.post(
            "/api/v1/directives/official",
            json={
                "title": "Về việc ứng phó bão số 3",
                "number": "12/CĐ-HĐND",
                "body": "Triển khai ngay phương án sơ tán dân.",
                "urgency": "urgent",
                "targets": {"unit_ids": city.commune_unit_ids},
                "pin": pki.pin("standing"),
            },
        )
        assert response.status_code == 201, response.text
    issued = response.json()
    _, page = await signed_in(server, browser, "ward001", viewport=TABLET)
    await page.goto(f"{server.url}/app/chat/#directive/{issued['id']}")
    await wait_online(page)
    badge = page.locator(f".signature-badge[data-file='{issued['file_id']}'][data-valid=true]")
    await badge.wait_for()
    assert await badge.inner_text() == "Đã ký số: Hoàng Văn Thường Trực — hợp lệ"
    await shot(page, "ward-signed-instruction")
    assert page.js_errors == []
