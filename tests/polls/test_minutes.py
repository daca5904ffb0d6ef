"""The minutes PDF: the record of the session, with correct Vietnamese text."""

from __future__ import annotations

import io
import re

from fpdf import FPDF
from pypdf import PdfReader

from meeting.agenda import add_item, set_current_item
from meeting.models import SpeakerKind
from meeting.speakers import finish, grant, request_floor
from server.audit import head_hash
from server.clock import ManualClock
from server.files.fonts import FONT_REGULAR
from tests.conftest import MakeServer
from tests.polls.conftest import build_assembly


def small_pdf(pages: int) -> bytes:
    pdf = FPDF()
    pdf.add_font("DejaVu", "", str(FONT_REGULAR))
    pdf.set_font("DejaVu", size=14)
    for page in range(1, pages + 1):
        pdf.add_page()
        pdf.cell(0, 10, f"Dự thảo Nghị quyết — trang {page}")
    return bytes(pdf.output())


async def test_minutes_record_the_session(make_server: MakeServer) -> None:
    clock = ManualClock()
    server = await make_server(clock=clock)
    a = await build_assembly(server, delegates=4, absent=1)
    chair = a.chair.principal
    async with server.http(a.chair.token) as client:
        upload = await client.post("/api/v1/files", files={
            "file": ("du-thao-nghi-quyet.pdf", small_pdf(3), "application/pdf")})
        assert upload.status_code == 201, upload.text
        document_id = upload.json()["id"]
    item = await add_item(server.ctx, chair, a.meeting_id,
                          title="Thảo luận dự thảo Nghị quyết về phát triển đô thị",
                          document_ids=[document_id], planned_minutes=45)
    await set_current_item(server.ctx, chair, a.meeting_id, item["id"])
    async with server.http(a.chair.token) as client:
        response = await client.post(f"/api/v1/meetings/{a.meeting_id}/presentation", json={
            "agenda_item_id": item["id"], "document_id": document_id, "page": 2})
        assert response.status_code == 200, response.text
    speaker = await request_floor(server.ctx, a.delegates[1].principal, a.meeting_id,
                                  SpeakerKind.QUESTION)
    await grant(server.ctx, chair, a.meeting_id, speaker["id"])
    await clock.advance(95)
    await finish(server.ctx, chair, a.meeting_id, speaker["id"])
    named = await a.open_poll(title="Thông qua Nghị quyết về phát triển đô thị",
                              agenda_item_id=item["id"])
    for member, choice in zip(a.delegates, ["yes", "yes", "yes", "no", "abstain"],
                              strict=True):
        assert (await a.vote(member, named["id"], choice)).status_code == 201
    assert (await a.close_poll(named["id"])).status_code == 200
    secret = await a.open_poll(title="Bầu Trưởng ban Đô thị", kind="choice",
                               options=["Lê Văn An", "Trần Thị Bình"], secret=True,
                               rule="majority_of_cast")
    for member, choice in zip(a.delegates, ["Lê Văn An"] * 3 + ["Trần Thị Bình"] * 2,
                              strict=True):
        assert (await a.vote(member, secret["id"], choice)).status_code == 201
    assert (await a.close_poll(secret["id"])).status_code == 200

    async with server.ctx.read() as session:
        seq, digest = await head_hash(session)
    async with server.http(a.delegates[2].token) as client:
        response = await client.get(f"/api/v1/meetings/{a.meeting_id}/minutes.pdf")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    reader = PdfReader(io.BytesIO(response.content))
    text = re.sub(r"\s+", " ", " ".join(page.extract_text() for page in reader.pages))
    for expected in [
        "BIÊN BẢN KỲ HỌP", "Kỳ họp thứ 12 Hội đồng nhân dân thành phố",
        "Hội trường Diên Hồng", "Nguyễn Văn Chủ Tọa", "Trần Thị Thư Ký",
        "Đi công tác nước ngoài", "Khách mời Phạm Quốc Hùng", "đủ túc số",
        "Thảo luận dự thảo Nghị quyết về phát triển đô thị", "45 phút",
        "du-thao-nghi-quyet", "Chất vấn", "1 phút 35 giây",
        "Thông qua Nghị quyết về phát triển đô thị", "Quá nửa tổng số đại biểu",
        "Tổng số đại biểu: 6; có mặt: 5; được biểu quyết: 5; số phiếu: 5",
        "Bầu Trưởng ban Đô thị", "bỏ phiếu kín", "Trúng cử: Lê Văn An",
        "Biểu quyết của từng đại biểu", "Không tán thành", "Không biểu quyết",
        f"bản ghi số {seq}", digest,
    ]:
        assert expected in text, expected
    # 3 yes of 6 members is not more than half.
    assert "KHÔNG THÔNG QUA" in text
    # Each named vote is printed; the secret poll has no list of who voted what.
    assert text.count("Biểu quyết của từng đại biểu") == 1
    # 08:00 UTC is 15:00 in Hà Nội.
    assert "15:0" in text
    # Printing is recorded in the audit chain with the document's hash.
    async with server.ctx.read() as session:
        after, _ = await head_hash(session)
    assert after == seq + 1
    await a.close()


async def test_minutes_only_for_those_who_may_see_the_meeting(make_server: MakeServer) -> None:
    server = await make_server()
    a = await build_assembly(server, delegates=1, absent=0)
    async with server.http(a.outsider.token) as client:
        response = await client.get(f"/api/v1/meetings/{a.meeting_id}/minutes.pdf")
    assert (response.status_code, response.json()["error"]["code"]) == (404, "meeting_not_found")
    await a.close()
