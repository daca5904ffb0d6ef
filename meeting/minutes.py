"""The minutes of a session (biên bản kỳ họp) as a PDF, in the layout of a Vietnamese
administrative record: the issuing body and the document number field on the left, the
national name and motto with the place and date line on the right, the title, the body,
and a signature block for the secretary and the chair.

``GET /api/v1/meetings/{id}/minutes.pdf``: meeting data with the actual opening and closing
times, attendance with check-in times and absences with their reasons, the quorum, the
agenda as it was dealt with (when each item became current), what was presented summarised
per document (pages shown, turns, first and last time), the speakers with their times,
every poll with its rule, numbers and result (and, for named polls, each delegate's vote),
the head of the audit chain at the time of printing and the last signed checkpoint of the
chain (its record, hash, time and signers), so that a printed or signed copy anchors the
chain and can be checked against it later (``dienhong verify-audit``).
``build_minutes_pdf`` gives the bytes without recording the printing (for a caller that
records what it does with them, such as signing).

The data is read on the event loop; the PDF is laid out in a worker thread (fpdf2 is
CPU work). Printing is itself audited, with the sha256 of the document handed out.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from meeting.agenda import agenda_json
from meeting.media.service import list_recordings
from meeting.models import Meeting, ParticipantRole, Speaker, SpeakerState
from meeting.participants import participants_json
from meeting.polls.models import Poll, PollState, PollVoter
from meeting.polls.rules import PollKind, Rule
from meeting.service import meeting_subject, quorum, require_visible
from server.audit import AuditRecord, head_hash
from server.audit_anchor import CheckpointFileError, last_checkpoint
from server.auth.principal import Principal
from server.context import Context
from server.files.fonts import FONT_BOLD, FONT_REGULAR
from server.files.models import StoredFile
from server.http import context, current_user, path_int
from server.org.service import display_names

FONT = "DejaVu"

ROLE_NAMES = {
    ParticipantRole.CHAIR.value: "Chủ tọa",
    ParticipantRole.SECRETARY.value: "Thư ký",
    ParticipantRole.DELEGATE.value: "Đại biểu",
    ParticipantRole.GUEST.value: "Khách mời",
}
STATE_NAMES = {
    "scheduled": "Chưa khai mạc",
    "in_session": "Đang họp",
    "adjourned": "Tạm dừng",
    "closed": "Đã bế mạc",
}
SPEECH_KINDS = {
    "speech": "Phát biểu",
    "question": "Chất vấn",
    "point_of_order": "Kiến nghị về thủ tục",
}
RULE_NAMES = {
    Rule.MAJORITY_OF_MEMBERS.value: "Quá nửa tổng số đại biểu",
    Rule.TWO_THIRDS_OF_MEMBERS.value: "Ít nhất hai phần ba tổng số đại biểu",
    Rule.MAJORITY_OF_CAST.value: "Quá nửa số phiếu biểu quyết",
}
CHOICE_NAMES = {"yes": "Tán thành", "no": "Không tán thành", "abstain": "Không biểu quyết"}
STATE_CHANGES = {
    "meeting.in_session": "Khai mạc / tiếp tục họp",
    "meeting.adjourned": "Tạm dừng",
    "meeting.closed": "Bế mạc",
}


@dataclass
class MinutesData:
    """Everything printed, as plain text and numbers (built on the loop, laid out in a thread)."""

    title: str
    place: str
    starts_at: str
    started_at: str
    closed_at: str
    state: str
    issuer: str
    doc_symbol: str
    place_date: str
    printed_at: str
    chairs: list[str]
    secretaries: list[str]
    attendance: list[list[str]]
    quorum_line: str
    # "Tham dự trực tuyến: …": who attended remotely (over the sitting's media).
    remote_line: str
    timeline: list[list[str]]
    agenda: list[list[str]]
    presented: list[list[str]]
    speeches: list[list[str]]
    speech_totals: list[list[str]]
    polls: list[dict[str, Any]]
    recordings: list[list[str]]
    audit_seq: int
    audit_hash: str
    notes: list[str] = field(default_factory=list)
    # The last signed checkpoint of the audit chain: lines to print under the heading.
    checkpoint: list[str] = field(default_factory=list)


def _local(moment: datetime | None, offset: timezone) -> str:
    if moment is None:
        return ""
    return moment.astimezone(offset).strftime("%H:%M:%S %d/%m/%Y")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    whole = round(seconds)
    return f"{whole // 60} phút {whole % 60:02d} giây"


def place_date_line(locality: str, moment: datetime) -> str:
    """ "Hà Nội, ngày 23 tháng 11 năm 2026": day and month under 10 written with a leading
    zero only for 1 and 2 (ngày 01, 02; tháng 01, 02), as the rules for official documents
    ask."""
    day = f"{moment.day:02d}" if moment.day < 3 else str(moment.day)
    month = f"{moment.month:02d}" if moment.month < 3 else str(moment.month)
    line = f"ngày {day} tháng {month} năm {moment.year}"
    return f"{locality}, {line}" if locality else line.capitalize()


def _page_ranges(pages: list[int]) -> str:
    """[1, 2, 3, 5, 7, 8] -> "1–3, 5, 7–8"."""
    spans: list[list[int]] = []
    for page in sorted(set(pages)):
        if spans and page == spans[-1][1] + 1:
            spans[-1][1] = page
        else:
            spans.append([page, page])
    return ", ".join(str(a) if a == b else f"{a}–{b}" for a, b in spans)


def _flatten(items: list[dict[str, Any]], prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
    rows: list[tuple[str, dict[str, Any]]] = []
    for number, item in enumerate(items, start=1):
        label = f"{prefix}{number}."
        rows.append((label, item))
        rows.extend(_flatten(item["children"], label))
    return rows


def _checkpoint_lines(ctx: Context, offset: timezone) -> list[str]:
    """The last checkpoint of the audit chain as the minutes print it (reads a file)."""
    from server.signing.checkpoints import organisation_signer

    try:
        found = last_checkpoint(ctx.settings)
    except CheckpointFileError:
        return ["Tệp điểm neo của nhật ký kiểm toán không đọc được."]
    if found is None:
        return ["Chưa có điểm neo nào của nhật ký kiểm toán."]
    try:
        signed_at = _local(datetime.fromisoformat(found.at), offset)
    except ValueError:
        signed_at = found.at
    organisation = organisation_signer(found)
    lines = [
        f"Điểm neo cuối của nhật ký kiểm toán: bản ghi số {found.seq}, "
        f"lập lúc {signed_at}, mã băm:",
        found.hash,
    ]
    if organisation is not None:
        name, print_ = organisation
        lines.append(f"Ký bởi tổ chức: {name} (dấu vân tay chứng thư SHA-256 {print_})")
    lines.append(f"Ký bởi khóa của máy chủ: {found.key_id} ({found.algorithm})")
    return lines


async def gather_minutes(ctx: Context, actor: Principal, meeting_id: int) -> MinutesData:
    """Read everything the minutes print, in one read transaction."""
    offset = timezone(timedelta(minutes=ctx.settings.minutes_utc_offset_mins))

    def at(moment: datetime | None) -> str:
        return _local(moment, offset)

    async with ctx.read() as session:
        meeting: Meeting = await require_visible(session, meeting_id, actor)
        people = await participants_json(session, meeting_id)
        names = {p["user_id"]: p["display_name"] for p in people}
        now_quorum = await quorum(session, meeting)
        agenda = await agenda_json(session, meeting_id)
        records = (
            (
                await session.execute(
                    select(AuditRecord)
                    .where(AuditRecord.subject == meeting_subject(meeting_id))
                    .order_by(AuditRecord.seq)
                )
            )
            .scalars()
            .all()
        )
        speeches = (
            (
                await session.execute(
                    select(Speaker)
                    .where(Speaker.meeting_id == meeting_id, Speaker.granted_at.is_not(None))
                    .order_by(Speaker.granted_at, Speaker.id)
                )
            )
            .scalars()
            .all()
        )
        polls = (
            (
                await session.execute(
                    select(Poll).where(Poll.meeting_id == meeting_id).order_by(Poll.id)
                )
            )
            .scalars()
            .all()
        )
        named_votes: dict[int, list[tuple[int, list[str]]]] = {}
        for poll in polls:
            if not poll.secret and poll.lifecycle is PollState.CLOSED:
                rows = (
                    await session.execute(
                        select(PollVoter.user_id, PollVoter.choice)
                        .where(PollVoter.poll_id == poll.id)
                        .order_by(PollVoter.user_id)
                    )
                ).all()
                named_votes[poll.id] = [(int(uid), list(choice or [])) for uid, choice in rows]
        file_ids = {
            int(r.details.get("document_id", 0)) for r in records if r.action == "meeting.present"
        }
        files = {
            f.id: f
            for f in (
                await session.execute(select(StoredFile).where(StoredFile.id.in_(sorted(file_ids))))
            ).scalars()
        }
        actor_ids = {r.actor_id for r in records if r.actor_id is not None}
        extra_names = await display_names(session, actor_ids)
        recordings = await list_recordings(session, meeting.id)
        audit_seq, audit_hash = await head_hash(session)
    names = {**extra_names, **names}
    items = _flatten(agenda)
    item_labels = {item["id"]: f"{label} {item['title']}" for label, item in items}

    attendance = []
    for number, p in enumerate(people, start=1):
        attendance.append(
            [
                str(number),
                p["display_name"],
                ROLE_NAMES.get(p["role"], p["role"]),
                ("Có mặt (trực tuyến)" if p.get("mode") == "remote" else "Có mặt")
                if p["present"]
                else "Vắng",
                at(datetime.fromisoformat(p["checked_in_at"])) if p["checked_in_at"] else "",
                p["absent_reason"],
            ]
        )
    quorum_line = (
        f"Có mặt {now_quorum['present']}/{now_quorum['members']} đại biểu; cần ít nhất "
        f"{now_quorum['required']} ({now_quorum['rule']['numerator']}/"
        f"{now_quorum['rule']['denominator']} tổng số đại biểu): "
        + ("đủ túc số." if now_quorum["reached"] else "không đủ túc số.")
    )
    remote = [p["display_name"] for p in people if p["present"] and p.get("mode") == "remote"]
    remote_line = (
        f"Tham dự trực tuyến: {', '.join(remote)} ({len(remote)} người)"
        + (
            ""
            if now_quorum["rule"].get("remote_counts", True)
            else "; không tính vào túc số theo quy định của kỳ họp"
        )
        + "."
        if remote
        else "Tham dự trực tuyến: không có."
    )
    timeline: list[list[str]] = []
    taken_up: dict[int, list[str]] = {}
    presented: list[list[str]] = []
    # Page turns, summarised per (agenda item, document): one line each, not one per turn.
    turns: dict[tuple[int, int], dict[str, Any]] = {}
    for record in records:
        if record.action in STATE_CHANGES:
            timeline.append(
                [at(record.at), STATE_CHANGES[record.action], names.get(record.actor_id or 0, "")]
            )
        elif record.action == "meeting.agenda.current":
            item_id = record.details.get("item_id")
            if item_id is not None:
                taken_up.setdefault(int(item_id), []).append(at(record.at))
        elif record.action == "meeting.present":
            key = (
                int(record.details.get("agenda_item_id", 0)),
                int(record.details.get("document_id", 0)),
            )
            turn = turns.setdefault(
                key, {"first": record.at, "last": record.at, "pages": [], "count": 0, "by": []}
            )
            turn["last"] = record.at
            turn["count"] += 1
            page = record.details.get("page")
            if isinstance(page, int):
                turn["pages"].append(page)
            who = names.get(record.actor_id or 0, "")
            if who and who not in turn["by"]:
                turn["by"].append(who)
    for (item_id, document_id), turn in turns.items():
        document = files.get(document_id)
        presented.append(
            [
                item_labels.get(item_id, ""),
                (document.title or document.name) if document else "",
                _page_ranges(turn["pages"]),
                str(turn["count"]),
                f"{at(turn['first'])} – {at(turn['last'])}",
                ", ".join(turn["by"]),
            ]
        )
    agenda_rows = [
        [
            label,
            item["title"],
            f"{item['planned_minutes']} phút" if item["planned_minutes"] else "",
            ", ".join(taken_up.get(item["id"], [])) or "chưa xem xét",
        ]
        for label, item in items
    ]
    speech_rows: list[list[str]] = []
    totals: dict[int, tuple[int, float]] = {}
    for speaker in speeches:
        speech_rows.append(
            [
                names.get(speaker.user_id, str(speaker.user_id)),
                SPEECH_KINDS.get(speaker.kind, speaker.kind),
                at(speaker.granted_at),
                at(speaker.finished_at),
                _duration(speaker.duration_secs)
                if speaker.state == SpeakerState.FINISHED.value
                else "đang phát biểu",
            ]
        )
        if speaker.duration_secs is not None:
            count, secs = totals.get(speaker.user_id, (0, 0.0))
            totals[speaker.user_id] = (count + 1, secs + speaker.duration_secs)
    total_rows = [
        [names.get(uid, str(uid)), str(count), _duration(secs)]
        for uid, (count, secs) in sorted(totals.items())
    ]
    poll_blocks = [_poll_block(poll, names, named_votes.get(poll.id), at) for poll in polls]
    settings = ctx.settings
    dated = (meeting.closed_at or meeting.started_at or meeting.starts_at).astimezone(offset)
    return MinutesData(
        title=meeting.title,
        place=meeting.place,
        starts_at=at(meeting.starts_at),
        started_at=at(meeting.started_at),
        closed_at=at(meeting.closed_at),
        issuer=settings.minutes_issuer,
        doc_symbol=settings.minutes_doc_symbol,
        place_date=place_date_line(settings.minutes_locality, dated),
        state=STATE_NAMES.get(meeting.state, meeting.state),
        printed_at=at(ctx.clock.now()),
        chairs=[p["display_name"] for p in people if p["role"] == ParticipantRole.CHAIR],
        secretaries=[p["display_name"] for p in people if p["role"] == ParticipantRole.SECRETARY],
        attendance=attendance,
        quorum_line=quorum_line,
        remote_line=remote_line,
        timeline=timeline,
        agenda=agenda_rows,
        presented=presented,
        speeches=speech_rows,
        speech_totals=total_rows,
        polls=poll_blocks,
        audit_seq=audit_seq,
        recordings=[
            [
                at(r["started_at"]),
                at(r["ended_at"]) if r["ended_at"] else "đang ghi",
                _duration(r.get("duration_secs")),
                str(r.get("format", "")),
                str(r.get("page", "")),
            ]
            for r in recordings
        ],
        audit_hash=audit_hash,
        checkpoint=await asyncio.to_thread(_checkpoint_lines, ctx, offset),
    )


def _choice_text(kind: str, choice: list[str]) -> str:
    if kind == PollKind.YES_NO_ABSTAIN.value:
        return CHOICE_NAMES.get(choice[0], choice[0]) if choice else ""
    return ", ".join(choice) if choice else "(phiếu trống)"


def _poll_block(
    poll: Poll, names: dict[int, str], votes: list[tuple[int, list[str]]] | None, at: Any
) -> dict[str, Any]:
    lines = [
        f"Hình thức: {'bỏ phiếu kín' if poll.secret else 'biểu quyết công khai'}; "
        f"quy tắc: {RULE_NAMES.get(poll.rule, poll.rule)}.",
    ]
    if poll.kind == PollKind.CHOICE.value:
        lines.append(f"Lựa chọn: {', '.join(poll.options)} (chọn tối đa {poll.max_choices}).")
    lines.append(f"Mở: {at(poll.opened_at) or 'chưa mở'}; đóng: {at(poll.closed_at) or '—'}.")
    tally_rows: list[list[str]] = []
    if poll.result is not None:
        numbers = poll.result["numbers"]
        lines.append(
            f"Tổng số đại biểu: {numbers['members']}; có mặt: {numbers['present']}; "
            f"được biểu quyết: {numbers['eligible']}; số phiếu: {numbers['cast']}; "
            f"số phiếu cần đạt: {poll.result['threshold']}."
        )
        for option, count in poll.result["tally"].items():
            label = CHOICE_NAMES.get(option, option) if poll.kind == "yes_no_abstain" else option
            tally_rows.append([label, str(count)])
        if poll.kind == PollKind.CHOICE.value:
            elected = poll.result.get("elected") or []
            verdict = ("Trúng cử: " + ", ".join(elected)) if elected else "Không ai trúng cử"
            if poll.result.get("undecided"):
                verdict += "; bằng phiếu, cần bầu lại: " + ", ".join(poll.result["undecided"])
        else:
            verdict = "THÔNG QUA" if poll.result["passed"] else "KHÔNG THÔNG QUA"
        lines.append(f"Kết quả: {verdict}.")
        if poll.ballots_digest:
            lines.append(f"Mã băm danh sách phiếu: {poll.ballots_digest}")
    else:
        lines.append("Chưa có kết quả (biểu quyết chưa kết thúc).")
    vote_rows = None
    if votes is not None:
        vote_rows = [
            [names.get(uid, str(uid)), _choice_text(poll.kind, choice)] for uid, choice in votes
        ]
    return {"title": poll.title, "lines": lines, "tally": tally_rows, "votes": vote_rows}


class _Minutes(FPDF):
    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(FONT, size=8)
        self.cell(0, 6, f"Trang {self.page_no()}/{{nb}}", align="C")


def render_minutes(data: MinutesData) -> bytes:
    """Lay the minutes out as a PDF (CPU work: call it in a worker thread)."""
    pdf = _Minutes(format="A4")
    pdf.set_auto_page_break(auto=True, margin=16)
    pdf.add_font(FONT, "", str(FONT_REGULAR))
    pdf.add_font(FONT, "B", str(FONT_BOLD))
    pdf.set_title(f"Biên bản - {data.title}")
    pdf.set_creator("Diên Hồng")
    pdf.add_page()

    def text(line: str, size: float = 10, bold: bool = False, align: str = "L") -> None:
        pdf.set_font(FONT, "B" if bold else "", size)
        pdf.multi_cell(0, size * 0.55, line, align=align, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def heading(line: str) -> None:
        pdf.ln(3)
        text(line, 12, bold=True)
        pdf.ln(1)

    def table(header: list[str], rows: list[list[str]], widths: tuple[int, ...]) -> None:
        if not rows:
            text("(không có)")
            return
        pdf.set_font(FONT, "", 8.5)
        with pdf.table(col_widths=widths, text_align="LEFT", line_height=4.6) as grid:
            head = grid.row()
            for cell in header:
                head.cell(cell)
            for row in rows:
                line = grid.row()
                for cell in row:
                    line.cell(cell)

    # The heading of an administrative record: the issuing body and the number field on the
    # left, the national name and motto and the place and date on the right.
    left_w, gap = 70.0, 6.0
    right_w = pdf.epw - left_w - gap
    top = pdf.get_y()
    pdf.set_font(FONT, "B", 11)
    pdf.multi_cell(left_w, 5.5, data.issuer, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    rule_y = pdf.get_y() + 0.8
    pdf.line(pdf.l_margin + left_w / 2 - 12, rule_y, pdf.l_margin + left_w / 2 + 12, rule_y)
    pdf.set_y(rule_y + 2)
    pdf.set_font(FONT, "", 11)
    pdf.multi_cell(
        left_w,
        5.5,
        f"Số: ........../{data.doc_symbol}",
        align="C",
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    left_bottom = pdf.get_y()
    right_x = pdf.l_margin + left_w + gap
    pdf.set_xy(right_x, top)
    pdf.set_font(FONT, "B", 11)
    pdf.multi_cell(
        right_w,
        5.5,
        "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM",
        align="C",
        new_x=XPos.LEFT,
        new_y=YPos.NEXT,
    )
    pdf.set_font(FONT, "B", 12)
    pdf.multi_cell(
        right_w, 5.5, "Độc lập - Tự do - Hạnh phúc", align="C", new_x=XPos.LEFT, new_y=YPos.NEXT
    )
    motto_w = pdf.get_string_width("Độc lập - Tự do - Hạnh phúc")
    rule_y = pdf.get_y() + 0.8
    pdf.line(right_x + (right_w - motto_w) / 2, rule_y, right_x + (right_w + motto_w) / 2, rule_y)
    pdf.set_xy(right_x, rule_y + 3)
    pdf.set_font(FONT, "", 11)
    pdf.multi_cell(right_w, 5.5, data.place_date, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_y(max(left_bottom, pdf.get_y()) + 6)
    text("BIÊN BẢN KỲ HỌP", 16, bold=True, align="C")
    text(data.title, 12, bold=True, align="C")
    pdf.ln(3)
    text(f"Thời gian dự kiến: {data.starts_at}")
    text(f"Khai mạc lúc: {data.started_at or 'chưa khai mạc'}")
    text(f"Bế mạc lúc: {data.closed_at or 'chưa bế mạc'}")
    text(f"Địa điểm: {data.place or '—'}")
    text(f"Tình trạng: {data.state}")
    text(f"Chủ tọa: {', '.join(data.chairs) or '—'}")
    text(f"Thư ký: {', '.join(data.secretaries) or '—'}")
    if data.timeline:
        table(["Thời điểm", "Diễn biến", "Người thực hiện"], data.timeline, (30, 40, 30))

    heading("I. ĐIỂM DANH VÀ TÚC SỐ")
    table(
        ["STT", "Họ và tên", "Vai trò", "Có mặt", "Giờ điểm danh", "Lý do vắng"],
        data.attendance,
        (7, 32, 13, 11, 25, 28),
    )
    pdf.ln(1)
    text(data.quorum_line, bold=True)
    text(data.remote_line)

    heading("II. CHƯƠNG TRÌNH KỲ HỌP")
    table(["Mục", "Nội dung", "Dự kiến", "Bắt đầu xem xét"], data.agenda, (10, 50, 14, 26))

    heading("III. TÀI LIỆU ĐÃ TRÌNH CHIẾU")
    table(
        [
            "Mục chương trình",
            "Tài liệu",
            "Các trang",
            "Số lần chuyển trang",
            "Thời gian",
            "Người trình chiếu",
        ],
        data.presented,
        (22, 20, 12, 10, 24, 14),
    )

    heading("IV. PHÁT BIỂU")
    table(
        ["Đại biểu", "Hình thức", "Bắt đầu", "Kết thúc", "Thời lượng"],
        data.speeches,
        (30, 20, 20, 20, 18),
    )
    if data.speech_totals:
        pdf.ln(1)
        text("Tổng hợp theo đại biểu:", bold=True)
        table(["Đại biểu", "Số lần", "Tổng thời gian"], data.speech_totals, (50, 15, 35))

    heading("V. BIỂU QUYẾT")
    if not data.polls:
        text("(không có)")
    for number, block in enumerate(data.polls, start=1):
        pdf.ln(1)
        text(f"{number}. {block['title']}", 10.5, bold=True)
        for line in block["lines"]:
            text(line, 9.5)
        if block["tally"]:
            table(["Lựa chọn", "Số phiếu"], block["tally"], (70, 30))
        if block["votes"] is not None:
            text("Biểu quyết của từng đại biểu:", 9.5, bold=True)
            table(["Đại biểu", "Biểu quyết"], block["votes"], (60, 40))

    heading("VI. BẢN GHI ÂM PHIÊN HỌP TRỰC TUYẾN")
    if not data.recordings:
        text("(không có)")
    else:
        text("Nghe hoặc tải bản ghi: mở đường dẫn trên trang Diên Hồng sau khi đăng nhập.", 9)
        table(
            ["Bắt đầu", "Kết thúc", "Thời lượng", "Định dạng", "Đường dẫn"],
            data.recordings,
            (22, 22, 14, 12, 30),
        )

    heading("VII. XÁC THỰC")
    text(f"Biên bản in lúc {data.printed_at}.")
    text(f"Nhật ký kiểm toán tại thời điểm in: bản ghi số {data.audit_seq}, mã băm đầu chuỗi:")
    text(data.audit_hash, 9)
    for number, line in enumerate(data.checkpoint):
        text(line, 9 if number else 10)

    # Signatures: the secretary on the left, the chair on the right; kept on one page.
    if pdf.get_y() > pdf.h - 70:
        pdf.add_page()
    pdf.ln(8)
    column = pdf.epw / 2
    top = pdf.get_y()
    for index, (role, people) in enumerate(
        (("THƯ KÝ", data.secretaries), ("CHỦ TỌA", data.chairs))
    ):
        x = pdf.l_margin + index * column
        pdf.set_xy(x, top)
        pdf.set_font(FONT, "B", 11)
        pdf.multi_cell(column, 5.5, role, align="C", new_x=XPos.LEFT, new_y=YPos.NEXT)
        pdf.set_font(FONT, "", 9.5)
        pdf.multi_cell(
            column, 5, "(Ký, ghi rõ họ tên)", align="C", new_x=XPos.LEFT, new_y=YPos.NEXT
        )
        pdf.set_xy(x, top + 34)
        pdf.set_font(FONT, "B", 11)
        pdf.multi_cell(
            column, 5.5, ", ".join(people) or "", align="C", new_x=XPos.LEFT, new_y=YPos.NEXT
        )
    return bytes(pdf.output())


async def build_minutes_pdf(
    ctx: Context, actor: Principal, meeting_id: int
) -> tuple[bytes, MinutesData]:
    """The minutes as PDF bytes, with the data printed in them; nothing is recorded (the
    caller audits what it does with the document)."""
    data = await gather_minutes(ctx, actor, meeting_id)
    return await asyncio.to_thread(render_minutes, data), data


async def minutes_pdf(ctx: Context, actor: Principal, meeting_id: int) -> bytes:
    """The minutes as PDF bytes; printing is audited with the document's sha256."""
    document, data = await build_minutes_pdf(ctx, actor, meeting_id)
    async with ctx.write() as w:
        await w.audit(
            actor.id,
            "meeting.minutes",
            meeting_subject(meeting_id),
            {
                "sha256": hashlib.sha256(document).hexdigest(),
                "audit_seq": data.audit_seq,
                "audit_hash": data.audit_hash,
            },
        )
    return document


async def get_minutes(request: Request) -> Response:
    actor = await current_user(request)
    meeting_id = path_int(request, "meeting_id")
    # Once signed, the stored signed minutes are the record (server.signing.minutes).
    from server.signing.minutes import signed_minutes

    document = await signed_minutes(context(request), actor, meeting_id) or await minutes_pdf(
        context(request), actor, meeting_id
    )
    return Response(
        document,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="bien-ban-ky-hop-{meeting_id}.pdf"'},
    )


routes: list[BaseRoute] = [
    Route("/api/v1/meetings/{meeting_id}/minutes.pdf", get_minutes, methods=["GET"]),
]
