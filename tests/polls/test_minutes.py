"""The minutes PDF: the record of the session, with correct Vietnamese text."""

from __future__ import annotations

import io
import re
from datetime import datetime, timedelta, timezone

from fpdf import FPDF
from pypdf import PdfReader

from meeting.agenda import add_item, set_current_item
from meeting.minutes import place_date_line
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
        upload = await client.post(
            "/api/v1/files",
            files={"file": ("du-thao-nghi-quyet.pdf", small_pdf(3), "application/pdf")},
        )
        assert upload.status_code == 201, upload.text
        document_id = upload.json()["id"]
    item = await add_item(
        server.ctx,
        chair,
        a.meeting_id,
        title="Thảo luận dự thảo Nghị quyết về phát triển đô thị",
        document_ids=[document_id],
        planned_minutes=45,
    )
    await set_current_item(server.ctx, chair, a.meeting_id, item["id"])
    async with server.http(a.chair.token) as client:
        response = await client.post(
            f"/api/v1/meetings/{a.meeting_id}/presentation",
            json={"agenda_item_id": item["id"], "document_id": document_id, "page": 2},
        )
        assert response.status_code == 200, response.text
    speaker = await request_floor(
        server.ctx, a.delegates[1].principal, a.meeting_id, SpeakerKind.QUESTION
    )
    await grant(server.ctx, chair, a.meeting_id, speaker["id"])
    await clock.advance(95)
    await finish(server.ctx, chair, a.meeting_id, speaker["id"])
    named = await a.open_poll(
        title="Thông qua Nghị quyết về phát triển đô thị", agenda_item_id=item["id"]
    )
    for member, choice in zip(a.delegates, ["yes", "yes", "yes", "no", "abstain"], strict=True):
        assert (await a.vote(member, named["id"], choice)).status_code == 201
    assert (await a.close_poll(named["id"])).status_code == 200
    secret = await a.open_poll(
        title="Bầu Trưởng ban Đô thị",
        kind="choice",
        options=["Lê Văn An", "Trần Thị Bình"],
        secret=True,
        rule="majority_of_cast",
    )
    for member, choice in zip(a.delegates, ["Lê Văn An"] * 3 + ["Trần Thị Bình"] * 2, strict=True):
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
        "BIÊN BẢN KỲ HỌP",
        "Kỳ họp thứ 12 Hội đồng nhân dân thành phố",
        "Hội trường Diên Hồng",
        "Nguyễn Văn Chủ Tọa",
        "Trần Thị Thư Ký",
        "Đi công tác nước ngoài",
        "Khách mời Phạm Quốc Hùng",
        "đủ túc số",
        "Thảo luận dự thảo Nghị quyết về phát triển đô thị",
        "45 phút",
        "du-thao-nghi-quyet",
        "Chất vấn",
        "1 phút 35 giây",
        "Thông qua Nghị quyết về phát triển đô thị",
        "Quá nửa tổng số đại biểu",
        "Tổng số đại biểu: 6; có mặt: 5; được biểu quyết: 5; số phiếu: 5",
        "Bầu Trưởng ban Đô thị",
        "bỏ phiếu kín",
        "Trúng cử: Lê Văn An",
        "Biểu quyết của từng đại biểu",
        "Không tán thành",
        "Không biểu quyết",
        f"bản ghi số {seq}",
        digest,
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


async def test_minutes_layout_times_page_turns_and_signatures(make_server: MakeServer) -> None:
    clock = ManualClock()
    server = await make_server(clock=clock, minutes_locality="Hà Nội")
    a = await build_assembly(server, delegates=2, absent=0)
    chair = a.chair.principal
    async with server.http(a.chair.token) as client:
        upload = await client.post(
            "/api/v1/files",
            files={"file": ("to-trinh-ngan-sach.pdf", small_pdf(6), "application/pdf")},
        )
        document_id = upload.json()["id"]
    item = await add_item(
        server.ctx, chair, a.meeting_id, title="Tờ trình ngân sách", document_ids=[document_id]
    )
    # Eight page turns: one line in the minutes, with the pages shown and the count.
    async with server.http(a.chair.token) as client:
        for page in (1, 2, 3, 2, 3, 5, 6, 5):
            await clock.advance(30)
            response = await client.post(
                f"/api/v1/meetings/{a.meeting_id}/presentation",
                json={"agenda_item_id": item["id"], "document_id": document_id, "page": page},
            )
            assert response.status_code == 200, response.text
        await clock.advance(3600)
        closed = await client.post(f"/api/v1/meetings/{a.meeting_id}/close")
        assert closed.status_code == 200, closed.text
        state = (await client.get(f"/api/v1/meetings/{a.meeting_id}")).json()
        response = await client.get(f"/api/v1/meetings/{a.meeting_id}/minutes.pdf")
    assert response.status_code == 200
    reader = PdfReader(io.BytesIO(response.content))
    text = re.sub(r"\s+", " ", " ".join(page.extract_text() for page in reader.pages))
    started = datetime.fromisoformat(state["started_at"]).astimezone(HANOI)
    ended = datetime.fromisoformat(state["closed_at"]).astimezone(HANOI)
    for expected in [
        "HỘI ĐỒNG NHÂN DÂN THÀNH PHỐ",
        "Số: ........../BB-HĐND",
        "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM",
        "Độc lập - Tự do - Hạnh phúc",
        f"Hà Nội, ngày {place_day(ended)}",
        f"Khai mạc lúc: {started:%H:%M:%S %d/%m/%Y}",
        f"Bế mạc lúc: {ended:%H:%M:%S %d/%m/%Y}",
        "1–3, 5–6",
        "THƯ KÝ",
        "CHỦ TỌA",
        "(Ký, ghi rõ họ tên)",
    ]:
        assert expected in text, expected
    # The actual opening is printed apart from the planned start.
    assert "Thời gian dự kiến" in text
    # One line for the document, not one per page turn.
    assert text.count("to-trinh-ngan-sach") == 1
    # The national name sits at the right of the page, the issuing body at the left.
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(response.content)
    first = document[0]
    width = first.get_width()
    textpage = first.get_textpage()

    def left_of(words: str) -> float:
        searcher = textpage.search(words)
        found = searcher.get_next()
        assert found is not None, words
        box = textpage.get_charbox(found[0])
        return float(box[0]) / width

    assert left_of("CỘNG HÒA") > 0.4
    assert left_of("HỘI ĐỒNG NHÂN DÂN") < 0.3
    # The signature names sit under their roles.
    assert text.index("THƯ KÝ") < text.rindex("Trần Thị Thư Ký")
    assert text.index("CHỦ TỌA") < text.rindex("Nguyễn Văn Chủ Tọa")
    await a.close()


HANOI = timezone(timedelta(hours=7))


def place_day(moment: datetime) -> str:
    return place_date_line("", moment)[len("Ngày ") :]
