"""A small Vietnamese PDF for the browser tests, made with fpdf2 and the shipped font."""

from __future__ import annotations

from pathlib import Path

from fpdf import FPDF

FONT = Path(__file__).resolve().parents[2] / "web_client" / "static" / "fonts" / "DejaVuSans.ttf"


def council_pdf(pages: int = 5) -> bytes:
    pdf = FPDF(format="A4")
    pdf.add_font("DejaVu", "", str(FONT))
    pdf.set_font("DejaVu", size=22)
    for n in range(1, pages + 1):
        pdf.add_page()
        pdf.cell(0, 20, f"Tờ trình số {n}: Nghị quyết về ngân sách", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("DejaVu", size=60)
        pdf.cell(0, 60, f"Trang {n}", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("DejaVu", size=14)
        pdf.multi_cell(0, 8, "Hội đồng nhân dân thành phố xem xét, quyết định. " * 6)
        pdf.set_font("DejaVu", size=22)
    return bytes(pdf.output())
