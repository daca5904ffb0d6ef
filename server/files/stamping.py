"""Stamping a reader's copy: runs inside a worker process.

Every page gets a line along its foot and a light diagonal mark naming the reader, the
reader's unit and the time of the download, drawn with the shipped DejaVu font so
Vietnamese names keep their diacritics (and stay extractable as text: fpdf2 embeds a
ToUnicode map). The same facts go into the document information dictionary. A leaked
copy names its reader.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from server.files.fonts import FONT_REGULAR

# Grey of the stamp (0-255) and opacity of the diagonal mark.
STAMP_GREY = 90
MARK_OPACITY = 0.12
FOOTER_MARGIN_PT = 10.0


def _overlay(width: float, height: float, footer: str, mark: str) -> Any:
    """A one-page PDF, ``width``×``height`` points, carrying only the stamp."""
    from fpdf import FPDF
    from pypdf import PdfReader

    pdf = FPDF(unit="pt", format=(width, height))
    pdf.set_auto_page_break(False)
    pdf.set_margins(0, 0, 0)
    pdf.add_font("DejaVu", "", str(FONT_REGULAR))
    pdf.add_page()
    pdf.set_text_color(STAMP_GREY)
    # The footer line fits the page width whatever the paper size.
    size = min(8.0, max(4.0, width / 75))
    pdf.set_font("DejaVu", size=size)
    while size > 3 and pdf.get_string_width(footer) > width - 2 * FOOTER_MARGIN_PT:
        size -= 0.5
        pdf.set_font("DejaVu", size=size)
    pdf.text(FOOTER_MARGIN_PT, height - FOOTER_MARGIN_PT, footer)
    # The diagonal mark across the middle of the page.
    diagonal = math.hypot(width, height)
    mark_size = max(8.0, min(36.0, diagonal / max(len(mark), 1) * 1.1))
    pdf.set_font("DejaVu", size=mark_size)
    mark_width = pdf.get_string_width(mark)
    angle = math.degrees(math.atan2(height, width))
    with pdf.local_context(fill_opacity=MARK_OPACITY, text_color=(0, 0, 0)), \
            pdf.rotation(angle, x=width / 2, y=height / 2):
        pdf.text(width / 2 - mark_width / 2, height / 2 + mark_size / 3, mark)
    return PdfReader(io.BytesIO(bytes(pdf.output()))).pages[0]


def stamp_pdf(path: str, out: str, footer: str, mark: str,
              metadata: dict[str, str]) -> dict[str, Any]:
    """Write to ``out`` a copy of ``path`` with the stamp on every page."""
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import TextStringObject

    reader = PdfReader(path, strict=False)
    if reader.is_encrypted:
        reader.decrypt("")
    writer = PdfWriter(clone_from=reader)
    overlays: dict[tuple[float, float], Any] = {}
    for page in writer.pages:
        if page.rotation:
            page.transfer_rotation_to_content()
        # The crop box is what viewers show (it defaults to the media box).
        box = page.cropbox
        width, height = float(box.width), float(box.height)
        key = (round(width, 2), round(height, 2))
        overlay = overlays.get(key)
        if overlay is None:
            overlay = overlays[key] = _overlay(width, height, footer, mark)
        page.merge_translated_page(overlay, float(box.left), float(box.bottom), over=True)
        page.compress_content_streams()
    writer.add_metadata({f"/{key}": TextStringObject(value) for key, value in metadata.items()})
    target = Path(out)
    with target.open("wb") as f:
        writer.write(f)
    return {"pages": len(writer.pages), "size": target.stat().st_size}
