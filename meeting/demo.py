"""The demo meeting: every demo delegate, ``chair`` and ``secretary``, an agenda with PDFs.

Each agenda item carries a generated multi-page document in Vietnamese (fpdf2 with the
DejaVu font the server ships), stored through the files service like an upload.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from datetime import datetime, timedelta

from fpdf import FPDF

from meeting.agenda import add_item
from meeting.meetings import create_meeting
from server.auth.principal import Principal
from server.context import Context
from server.demo import DemoCity
from server.files.fonts import FONT_BOLD, FONT_REGULAR
from server.files.models import StoredFile
from server.files.storage import ContentStore
from server.org.models import User

DEMO_MEETING_TITLE = "Kỳ họp thứ mười hai, Hội đồng nhân dân thành phố khóa XVI"
# (title, planned minutes, pages of its document, sub-items)
DEMO_AGENDA: list[tuple[str, int, int, list[str]]] = [
    ("Khai mạc kỳ họp; thông qua chương trình", 15, 2, []),
    (
        "Báo cáo tình hình kinh tế - xã hội năm 2026 và kế hoạch năm 2027",
        60,
        6,
        ["Thẩm tra của Ban Kinh tế - Ngân sách", "Thảo luận tại hội trường"],
    ),
    ("Dự toán ngân sách địa phương và phân bổ ngân sách năm 2027", 45, 5, []),
    ("Nghị quyết về đầu tư công trung hạn giai đoạn 2026-2030", 45, 4, []),
    ("Chất vấn và trả lời chất vấn", 90, 3, []),
    ("Bế mạc kỳ họp", 15, 2, []),
]
PARAGRAPH = (
    "Hội đồng nhân dân thành phố xem xét, thảo luận và quyết định các nội dung thuộc thẩm "
    "quyền theo quy định của Luật Tổ chức chính quyền địa phương. Các đại biểu nghiên cứu "
    "kỹ tài liệu, phát biểu ý kiến về những vấn đề cử tri quan tâm: giải phóng mặt bằng, "
    "giao thông đô thị, y tế cơ sở, giáo dục và bảo đảm an sinh xã hội."
)


@functools.lru_cache(maxsize=16)
def document_pdf(title: str, pages: int) -> tuple[bytes, int]:
    """A multi-page Vietnamese document and its page count (CPU work: run in a thread)."""
    pdf = FPDF(format="A4")
    pdf.set_title(title)
    pdf.set_author("Văn phòng Đoàn ĐBQH và HĐND thành phố")
    pdf.add_font("DejaVu", "", str(FONT_REGULAR))
    pdf.add_font("DejaVu", "B", str(FONT_BOLD))
    for page in range(1, pages + 1):
        pdf.add_page()
        pdf.set_font("DejaVu", "B", 15)
        pdf.multi_cell(0, 8, title)
        pdf.ln(4)
        pdf.set_font("DejaVu", "", 11)
        pdf.multi_cell(0, 6, f"Trang {page}/{pages}")
        pdf.ln(2)
        for index in range(1, 4):
            pdf.multi_cell(0, 6, f"{page}.{index}. {PARAGRAPH}")
            pdf.ln(2)
    return bytes(pdf.output()), pdf.page


async def store_document(
    ctx: Context, uploader: Principal, data: bytes, name: str, pages: int
) -> StoredFile:
    """Store a generated PDF as the uploader's file (content-addressed, audited)."""
    sha = hashlib.sha256(data).hexdigest()
    store = ContentStore(ctx.settings.data_dir)
    temp = store.temp_path(".pdf")
    await asyncio.to_thread(temp.write_bytes, data)
    await asyncio.to_thread(store.keep, temp, sha)
    async with ctx.write() as w:
        row = StoredFile(
            sha256=sha,
            size=len(data),
            content_type="application/pdf",
            name=name,
            pages=pages,
            title=name.removesuffix(".pdf"),
            text="",
            uploader_id=uploader.id,
            created_at=w.now,
        )
        w.session.add(row)
        await w.session.flush()
        await w.audit(
            uploader.id,
            "file.upload",
            f"file:{row.id}",
            {"sha256": sha, "size": len(data), "name": name, "generated": True},
        )
    return row


# File names of the generated documents stay under this many characters.
FILE_TITLE_MAX = 60


def short_title(title: str, limit: int = FILE_TITLE_MAX) -> str:
    """``title`` cut at the last whole word within ``limit`` characters."""
    if len(title) <= limit:
        return title
    head = title[: limit + 1]
    if " " not in head:
        return title[:limit]
    return head.rsplit(" ", 1)[0].rstrip(" ,;:-") or title[:limit]


def demo_start(now: datetime) -> datetime:
    """The demo session starts within the hour, today (or now, late in the evening)."""
    start = (now + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    return start if start.date() == now.date() else now


async def seed_demo_meeting(ctx: Context, city: DemoCity) -> list[str]:
    """Add the demo council session to the demo city; returns lines for the summary."""
    async with ctx.read() as session:
        chair_user = await session.get(User, city.chair_id)
    assert chair_user is not None
    chair = Principal.of(chair_user)
    meeting = await create_meeting(
        ctx,
        chair,
        title=DEMO_MEETING_TITLE,
        starts_at=demo_start(ctx.clock.now()),
        place="Hội trường Thành ủy",
        chair_ids=[city.chair_id],
        secretary_ids=[city.secretary_id],
        delegate_ids=city.delegate_ids,
    )
    documents = 0
    for title, minutes, pages, subitems in DEMO_AGENDA:
        data, page_count = await asyncio.to_thread(document_pdf, title, pages)
        stored = await store_document(ctx, chair, data, f"{short_title(title)}.pdf", page_count)
        documents += 1
        item = await add_item(
            ctx, chair, meeting.id, title=title, document_ids=[stored.id], planned_minutes=minutes
        )
        for sub in subitems:
            await add_item(
                ctx,
                chair,
                meeting.id,
                title=sub,
                document_ids=[],
                parent_id=item["id"],
                planned_minutes=minutes // 2,
            )
    return [
        f"meeting {meeting.id}: '{DEMO_MEETING_TITLE}' with chair, secretary and "
        f"{len(city.delegate_ids)} delegates; agenda of {len(DEMO_AGENDA)} items with "
        f"{documents} generated PDF documents",
    ]
