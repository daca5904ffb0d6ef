"""Vote result sheets: each closed poll's result as a PDF signed by the organisation.

When a poll closes (after its transaction commits) the sheet is laid out and sealed in
the background, off the event loop: question, rule, numbers, tally, outcome, the digest
of the counted ballots and the head of the audit chain at that moment. The sealed sheet
is stored as the ``poll_result`` document of ``poll:{id}`` and served at
``GET /api/v1/polls/{id}/result.pdf``. Nothing happens without an organisation key.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta, timezone
from typing import Any

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from meeting.models import Meeting
from meeting.participants import meeting_topic, require_visible
from meeting.polls.models import Poll
from server.audit import head_hash
from server.auth.principal import Principal
from server.context import Context
from server.errors import ApiError, NotFound
from server.files.fonts import FONT_BOLD, FONT_REGULAR
from server.signing.config import organisation_key
from server.signing.documents import Step, add_signature, find_document, read_content

log = logging.getLogger("dienhong.signing")

KIND = "poll_result"
RULES = {
    "majority_of_members": "Quá nửa tổng số đại biểu",
    "two_thirds_of_members": "Ít nhất hai phần ba tổng số đại biểu",
    "majority_of_cast": "Quá nửa số phiếu bầu",
}
CHOICES = {"yes": "Tán thành", "no": "Không tán thành", "abstain": "Không biểu quyết"}


@dataclass(frozen=True)
class ResultSheet:
    meeting_title: str
    poll_id: int
    title: str
    secret: bool
    rule: str
    result: dict[str, Any]
    closed_at: str
    ballots_digest: str
    audit_seq: int
    audit_hash: str


def render_sheet(sheet: ResultSheet) -> bytes:
    """The result sheet as a PDF (CPU work: call it in a thread)."""
    pdf = FPDF(format="A4")
    pdf.add_font("DejaVu", "", str(FONT_REGULAR))
    pdf.add_font("DejaVu", "B", str(FONT_BOLD))
    pdf.set_title(f"Kết quả biểu quyết - {sheet.title}")
    pdf.set_creator("Diên Hồng")
    pdf.add_page()

    def line(text: str, size: float = 11, bold: bool = False, align: str = "L") -> None:
        pdf.set_font("DejaVu", "B" if bold else "", size)
        pdf.multi_cell(0, size * 0.6, text, align=align, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    line("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", 12, True, "C")
    line("Độc lập - Tự do - Hạnh phúc", 11, True, "C")
    pdf.ln(6)
    line("PHIẾU KẾT QUẢ BIỂU QUYẾT", 15, True, "C")
    line(sheet.meeting_title, 11, False, "C")
    pdf.ln(4)
    line(f"Nội dung biểu quyết: {sheet.title}", 12, True)
    line(f"Hình thức: {'bỏ phiếu kín' if sheet.secret else 'biểu quyết công khai'}")
    line(f"Điều kiện thông qua: {RULES.get(sheet.rule, sheet.rule)}")
    numbers = sheet.result.get("numbers", {})
    line(
        f"Tổng số đại biểu: {numbers.get('members', '')} · có mặt: "
        f"{numbers.get('present', '')} · số phiếu: {numbers.get('cast', '')}"
    )
    pdf.ln(2)
    for choice, count in sheet.result.get("tally", {}).items():
        line(f"  {CHOICES.get(choice, choice)}: {count}")
    pdf.ln(2)
    outcome = "ĐƯỢC THÔNG QUA" if sheet.result.get("passed") else "KHÔNG ĐƯỢC THÔNG QUA"
    line(f"Kết quả: {outcome}", 13, True)
    if sheet.result.get("elected"):
        line("Trúng cử: " + ", ".join(sheet.result["elected"]))
    pdf.ln(4)
    line(f"Đóng biểu quyết lúc: {sheet.closed_at}", 9)
    line(f"Mã kiểm tra các phiếu (SHA-256): {sheet.ballots_digest}", 9)
    line(f"Nhật ký kiểm toán: bản ghi {sheet.audit_seq}, mã {sheet.audit_hash}", 9)
    return bytes(pdf.output())


async def _sheet(ctx: Context, poll_id: int) -> tuple[ResultSheet, int]:
    offset = timezone(timedelta(minutes=ctx.settings.minutes_utc_offset_mins))
    async with ctx.read() as session:
        poll = await session.get(Poll, poll_id)
        assert poll is not None
        meeting = await session.get(Meeting, poll.meeting_id)
        seq, digest = await head_hash(session)
    assert meeting is not None and poll.result is not None and poll.closed_at is not None
    return ResultSheet(
        meeting_title=meeting.title,
        poll_id=poll.id,
        title=poll.title,
        secret=poll.secret,
        rule=poll.rule,
        result=dict(poll.result),
        closed_at=poll.closed_at.astimezone(offset).strftime("%d/%m/%Y %H:%M:%S"),
        ballots_digest=poll.ballots_digest or "",
        audit_seq=seq,
        audit_hash=digest,
    ), meeting.id


async def seal_result(ctx: Context, poll_id: int) -> None:
    """Lay out and seal the result sheet of a closed poll (once; later calls do nothing)."""
    seal = organisation_key(ctx.settings)
    if seal is None:
        return
    subject = f"poll:{poll_id}"
    async with ctx.read() as session:
        if await find_document(session, KIND, subject) is not None:
            return
    sheet, meeting_id = await _sheet(ctx, poll_id)
    pdf = await asyncio.to_thread(render_sheet, sheet)
    key, secret = seal
    await add_signature(
        ctx,
        KIND,
        subject,
        pdf,
        Step(
            name="organisation",
            key=key,
            secret=secret,
            signer_id=None,
            reason="Kết quả biểu quyết",
            next_step=None,
        ),
        actor_id=None,
        topic=meeting_topic(meeting_id),
    )


@dataclass
class ResultSealing:
    """Result sheets being sealed on this node; kept so their tasks are not collected."""

    tasks: set[asyncio.Task[None]] = field(default_factory=set)


def result_closed(ctx: Context, poll_id: int) -> None:
    """Called after a poll's closing commit: seal its result sheet in the background."""
    if organisation_key(ctx.settings) is None:
        return
    tasks = ctx.runtimes.setdefault(ResultSealing, ResultSealing).tasks

    async def run() -> None:
        try:
            await seal_result(ctx, poll_id)
        except ApiError as exc:
            log.error("the result sheet of poll %d was not sealed: %s", poll_id, exc.message)

    task = asyncio.get_running_loop().create_task(run(), name=f"seal-poll-{poll_id}")
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def sealed_result(ctx: Context, actor: Principal, poll_id: int) -> bytes:
    """The sealed result sheet; 404 ``result_not_sealed`` until it is."""
    async with ctx.read() as session:
        poll = await session.get(Poll, poll_id)
        if poll is None:
            raise NotFound(f"Poll {poll_id} does not exist.", code="poll_not_found")
        await require_visible(session, poll.meeting_id, actor)
        document = await find_document(session, KIND, f"poll:{poll_id}")
    if document is None:
        raise NotFound(
            f"The result of poll {poll_id} has no sealed sheet (yet).", code="result_not_sealed"
        )
    return await asyncio.to_thread(read_content, ctx.settings, document)
