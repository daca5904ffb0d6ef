"""Instructions issued as official documents: laid out by the server, signed by the issuer.

``POST /api/v1/directives/official`` takes what ``POST /api/v1/directives`` takes plus the
document's number and the issuer's token PIN. The server lays the instruction out as a PDF
(national header, number, place and date, urgency, recipients, subject, body, signer),
the issuer signs it with their own token (PAdES B-LT), the signed PDF is stored as a file
with its signature summary and goes out as the instruction's first attachment: every
recipient gets it with its signature status (``signatures`` of the file). A refused
signature (wrong PIN, revoked certificate, absent token...) sends and stores nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from pypdf import PdfReader
from sqlalchemy import select

from messaging.directives import issue_directive
from messaging.models import Urgency
from server.auth.principal import Principal
from server.context import Context
from server.errors import BadRequest, Forbidden, Unprocessable
from server.files.fonts import FONT_BOLD, FONT_REGULAR
from server.files.models import StoredFile
from server.org.models import Confidentiality, Role, Unit
from server.signing.config import person_key, signing_policy, verify_policy
from server.signing.documents import store
from server.signing.models import FileSignatures
from server.signing.pades import Signed, sign_pdf
from server.signing.verify import verify_pdf

URGENCY_MARKS = {
    Urgency.URGENT: "KHẨN",
    Urgency.VERY_URGENT: "THƯỢNG KHẨN",
    Urgency.EXPRESS: "HỎA TỐC",
}
# Official documents give the date as Vietnam reads it (UTC+7).
VIETNAM = timezone(timedelta(hours=7))


@dataclass(frozen=True)
class OfficialLayout:
    issuer_unit: str
    number: str
    place: str
    issued_at: datetime
    urgency: Urgency
    recipients: list[str]
    title: str
    body: str
    signer: str


def render_official(doc: OfficialLayout) -> bytes:
    """The instruction as an official document (CPU work: call it in a thread)."""
    pdf = FPDF(format="A4")
    pdf.add_font("DejaVu", "", str(FONT_REGULAR))
    pdf.add_font("DejaVu", "B", str(FONT_BOLD))
    pdf.set_title(f"{doc.number} - {doc.title}")
    pdf.set_creator("Diên Hồng")
    pdf.add_page()

    def line(text: str, size: float = 12, bold: bool = False, align: str = "L") -> None:
        pdf.set_font("DejaVu", "B" if bold else "", size)
        pdf.multi_cell(0, size * 0.6, text, align=align, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    line("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", 12, True, "C")
    line("Độc lập - Tự do - Hạnh phúc", 12, True, "C")
    pdf.ln(4)
    line(doc.issuer_unit.upper(), 12, True)
    line(f"Số: {doc.number}")
    local = doc.issued_at.astimezone(VIETNAM)
    line(
        f"{doc.place}, ngày {local.day:02d} tháng {local.month:02d} năm {local.year}",
        11,
        False,
        "R",
    )
    if doc.urgency in URGENCY_MARKS:
        line(URGENCY_MARKS[doc.urgency], 14, True)
    pdf.ln(4)
    line(doc.title, 14, True, "C")
    pdf.ln(2)
    line("Kính gửi: " + "; ".join(doc.recipients), 12)
    pdf.ln(3)
    line(doc.body, 12)
    pdf.ln(8)
    line("NGƯỜI KÝ", 12, True, "R")
    line(doc.signer, 12, False, "R")
    return bytes(pdf.output())


def _keep(ctx: Context, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    content = store(ctx.settings)
    temp = content.temp_path(".official")
    temp.write_bytes(data)
    content.keep(temp, sha)
    return sha


async def issue_official(
    ctx: Context,
    actor: Principal,
    *,
    number: str,
    pin: str,
    title: str,
    body: str,
    urgency: Urgency,
    confidentiality: Confidentiality,
    unit_ids: list[int],
    include_descendants: bool,
    ack_required: bool,
    due_at: datetime | None,
    attachment_ids: list[int],
) -> dict[str, Any]:
    """Lay out, sign as ``actor`` and issue an instruction; the signed PDF is attached."""
    if not actor.has_role(Role.STANDING):
        raise Forbidden("Only the Standing Committee issues directives.", code="not_standing")
    if not pin:
        raise BadRequest("Give the PIN of your signing token.", code="pin_required")
    async with ctx.read() as session:
        issuer_unit = await session.get(Unit, actor.unit_id)
        rows = (await session.execute(select(Unit).where(Unit.id.in_(unit_ids)))).scalars()
        names = {unit.id: unit.name for unit in rows}
    unknown = sorted(set(unit_ids) - set(names))
    if unknown or not unit_ids:
        raise Unprocessable(
            f"Unknown unit ids: {unknown}." if unknown else "Name at least one target unit.",
            code="unknown_units" if unknown else "empty_targets",
        )
    layout = OfficialLayout(
        issuer_unit=issuer_unit.name if issuer_unit else "",
        number=number,
        place=ctx.settings.signing_document_place,
        issued_at=ctx.clock.now(),
        urgency=urgency,
        recipients=[names[i] for i in unit_ids],
        title=title,
        body=body,
        signer=actor.display_name,
    )
    key = person_key(ctx.settings, actor.username)
    settings = ctx.settings

    def sign() -> tuple[Signed, list[dict[str, Any]], str, int]:
        signed = sign_pdf(
            render_official(layout),
            key,
            pin,
            signing_policy(settings),
            field_name="issuer",
            reason=f"Ban hành văn bản số {number}",
        )
        summary = verify_pdf(signed.pdf, verify_policy(settings))
        return signed, summary, _keep(ctx, signed.pdf), _pages(signed.pdf)

    signed, signatures, sha, pages = await asyncio.to_thread(sign)
    async with ctx.write() as w:
        row = StoredFile(
            sha256=sha,
            size=len(signed.pdf),
            content_type="application/pdf",
            name=f"van-ban-{number}.pdf".replace("/", "-"),
            pages=pages,
            title=title[:500],
            text=body,
            uploader_id=actor.id,
            created_at=w.now,
        )
        w.session.add(row)
        await w.session.flush()
        w.session.add(FileSignatures(file_id=row.id, signatures=signatures, checked_at=w.now))
        await w.audit(
            actor.id,
            "document.signed",
            f"file:{row.id}",
            {
                "kind": "directive",
                "step": "issuer",
                "signer": signed.subject_name,
                "certificate_sha256": signed.fingerprint,
                "sha256": sha,
                "number": number,
            },
        )
        file_id = row.id
    issued = await issue_directive(
        ctx,
        actor,
        title=title,
        body=body,
        urgency=urgency,
        confidentiality=confidentiality,
        unit_ids=unit_ids,
        include_descendants=include_descendants,
        ack_required=ack_required,
        due_at=due_at,
        attachment_ids=[file_id, *attachment_ids],
    )
    return {
        "id": issued.id,
        "recipient_count": issued.recipient_count,
        "left_out": issued.left_out,
        "file_id": file_id,
        "signatures": signatures,
    }


def _pages(data: bytes) -> int:
    return len(PdfReader(io.BytesIO(data)).pages)
