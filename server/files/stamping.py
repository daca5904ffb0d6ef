"""Stamping a reader's copy: runs inside a worker process.

Every page gets a line along its foot and a light diagonal mark naming the reader, the
reader's unit and the time of the download, drawn with the shipped DejaVu font so
Vietnamese names keep their diacritics (and stay extractable as text: fpdf2 embeds a
ToUnicode map). The same facts go into the document information dictionary. A leaked
copy names its reader.

Two more rules:

* A signed PDF is never rewritten: the stamp goes on each page as a print-only ``/Stamp``
  annotation appended by an incremental update (pyhanko's writer), so every original
  signature still validates and reports "annotations added after signing". Its active
  content is left as signed (removing it would change signed bytes); the copy is served
  with a sandboxing Content-Security-Policy and viewers are expected to ask before running
  scripts.
* An unsigned PDF loses its active content in the copy: ``/OpenAction`` and ``/AA``
  actions of the catalog, pages, annotations and form fields, link actions that run
  JavaScript or launch programs, and the document's JavaScript name tree.
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
    with (
        pdf.local_context(fill_opacity=MARK_OPACITY, text_color=(0, 0, 0)),
        pdf.rotation(angle, x=width / 2, y=height / 2),
    ):
        pdf.text(width / 2 - mark_width / 2, height / 2 + mark_size / 3, mark)
    return PdfReader(io.BytesIO(bytes(pdf.output()))).pages[0]


# Actions that run something rather than go somewhere.
ACTIVE_ACTIONS = frozenset(
    {
        "/JavaScript",
        "/Launch",
        "/ImportData",
        "/Rendition",
        "/SubmitForm",
        "/ResetForm",
        "/Sound",
        "/Movie",
        "/RichMediaExecute",
    }
)
# Annotation flags of the stamp: Print (4), ReadOnly (64), Locked (128).
STAMP_FLAGS = 4 | 64 | 128


def is_signed(path: str) -> bool:
    """True when the PDF has a filled signature field."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    with open(path, "rb") as f:
        try:
            return bool(PdfFileReader(f, strict=False).embedded_signatures)
        except (ValueError, KeyError, TypeError, OSError):
            return False


def _is_active(action: Any) -> bool:
    from pypdf.generic import ArrayObject, DictionaryObject

    action = action.get_object() if hasattr(action, "get_object") else action
    if not isinstance(action, DictionaryObject):
        return False  # a destination (a page to open at), not an action
    if str(action.get("/S", "")) in ACTIVE_ACTIONS:
        return True
    following = action.get("/Next")
    if following is None:
        return False
    following = following.get_object()
    chain = following if isinstance(following, ArrayObject) else [following]
    return any(_is_active(item) for item in chain)


def remove_active_content(writer: Any) -> int:
    """Drop everything in the document that runs on opening or on interaction; returns
    how many entries were removed."""
    from pypdf.generic import NameObject

    removed = 0
    root = writer._root_object  # pypdf's catalog (private name, pinned: pypdf>=4.2,<7)
    if "/OpenAction" in root and _is_active(root["/OpenAction"]):
        del root[NameObject("/OpenAction")]
        removed += 1
    if "/AA" in root:
        del root[NameObject("/AA")]
        removed += 1
    names = root.get("/Names")
    if names is not None:
        names = names.get_object()
        if "/JavaScript" in names:
            del names[NameObject("/JavaScript")]
            removed += 1
    for page in writer.pages:
        if "/AA" in page:
            del page[NameObject("/AA")]
            removed += 1
        for ref in page.get("/Annots", None) or []:
            annot = ref.get_object()
            if "/AA" in annot:
                del annot[NameObject("/AA")]
                removed += 1
            if "/A" in annot and _is_active(annot["/A"]):
                del annot[NameObject("/A")]
                removed += 1
    form = root.get("/AcroForm")
    stack = list(form.get_object().get("/Fields", None) or []) if form is not None else []
    while stack:
        field = stack.pop().get_object()
        if "/AA" in field:
            del field[NameObject("/AA")]
            removed += 1
        stack.extend(field.get("/Kids", None) or [])
    return removed


def stamp_pdf(
    path: str, out: str, footer: str, mark: str, metadata: dict[str, str]
) -> dict[str, Any]:
    """Write to ``out`` a copy of ``path`` with the stamp on every page."""
    if is_signed(path):
        return _stamp_signed(path, out, footer, mark, metadata)
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import TextStringObject

    reader = PdfReader(path, strict=False)
    if reader.is_encrypted:
        reader.decrypt("")
    writer = PdfWriter(clone_from=reader)
    removed = remove_active_content(writer)
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
    return {
        "pages": len(writer.pages),
        "size": target.stat().st_size,
        "active_content_removed": removed,
        "incremental": False,
    }


def _overlay_pdf(width: float, height: float, footer: str, mark: str) -> bytes:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_page(_overlay(width, height, footer, mark))
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _stamp_signed(
    path: str, out: str, footer: str, mark: str, metadata: dict[str, str]
) -> dict[str, Any]:
    """The stamp as one annotation per page, in an incremental update of the signed file."""
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.pdf_utils.reader import PdfFileReader

    target = Path(out)
    with open(path, "rb") as source:
        original = source.read()
    writer = IncrementalPdfFileWriter(io.BytesIO(original), strict=False)
    count = int(writer.root["/Pages"]["/Count"])
    appearances: dict[tuple[float, float], Any] = {}
    for index in range(count):
        page_ref, _resources = writer.find_page_for_modification(index)
        page = page_ref.get_object()
        box = page.get("/CropBox") or page.get("/MediaBox") or writer.root["/Pages"]["/MediaBox"]
        left, bottom, right, top = (float(v) for v in box)
        width, height = right - left, top - bottom
        key = (round(width, 2), round(height, 2))
        appearance = appearances.get(key)
        if appearance is None:
            overlay = PdfFileReader(io.BytesIO(_overlay_pdf(width, height, footer, mark)))
            appearance = appearances[key] = writer.import_page_as_xobject(overlay)
        annotation = writer.add_object(
            generic.DictionaryObject(
                {
                    generic.NameObject("/Type"): generic.NameObject("/Annot"),
                    generic.NameObject("/Subtype"): generic.NameObject("/Stamp"),
                    generic.NameObject("/Rect"): generic.ArrayObject(
                        generic.FloatObject(v) for v in (left, bottom, right, top)
                    ),
                    generic.NameObject("/F"): generic.NumberObject(STAMP_FLAGS),
                    generic.NameObject("/Contents"): generic.TextStringObject(footer),
                    generic.NameObject("/NM"): generic.TextStringObject(
                        f"dienhong-stamp-{index + 1}"
                    ),
                    generic.NameObject("/P"): page_ref,
                    generic.NameObject("/AP"): generic.DictionaryObject(
                        {generic.NameObject("/N"): appearance}
                    ),
                }
            )
        )
        writer.register_annotation(page_ref, annotation)
    _update_info(writer, metadata)
    with target.open("wb") as f:
        writer.write(f)
    return {
        "pages": count,
        "size": target.stat().st_size,
        "active_content_removed": 0,
        "incremental": True,
    }


def _update_info(writer: Any, metadata: dict[str, str]) -> None:
    """A new document information dictionary: the old entries plus ``metadata``."""
    from pyhanko.pdf_utils import generic

    info = generic.DictionaryObject()
    try:
        old = writer.trailer_view["/Info"]
    except KeyError:
        old = None
    if isinstance(old, generic.DictionaryObject):
        for key in old:
            value = old[key]
            if isinstance(
                value, (generic.TextStringObject, generic.ByteStringObject, generic.NameObject)
            ):
                info[generic.NameObject(key)] = value
    for key, value in metadata.items():
        info[generic.NameObject(f"/{key}")] = generic.TextStringObject(value)
    writer.set_info(info)


def _to_pyhanko(value: Any) -> Any:
    """A direct pypdf object as the same pyhanko object."""
    from pyhanko.pdf_utils import generic as ph
    from pypdf import generic as pp

    if isinstance(value, pp.DictionaryObject):
        return ph.DictionaryObject(
            {ph.NameObject(str(k)): _to_pyhanko(v) for k, v in value.items()}
        )
    if isinstance(value, pp.ArrayObject):
        return ph.ArrayObject(_to_pyhanko(v) for v in value)
    if isinstance(value, pp.NameObject):
        return ph.NameObject(str(value))
    if isinstance(value, pp.BooleanObject):
        return ph.BooleanObject(bool(value))
    if isinstance(value, pp.NumberObject):
        return ph.NumberObject(int(value))
    if isinstance(value, pp.FloatObject):
        return ph.FloatObject(float(value))
    if isinstance(value, pp.TextStringObject):
        return ph.TextStringObject(str(value))
    if isinstance(value, pp.ByteStringObject):
        return ph.ByteStringObject(bytes(value))
    if isinstance(value, pp.NullObject):
        return ph.NullObject()
    raise ValueError(f"cannot carry {type(value).__name__} into an incremental update")


def append_annotations(path: str, annotations: list[tuple[int, Any]]) -> bytes:
    """The PDF at ``path`` with ``(page index, pypdf annotation dictionary)`` added by an
    incremental update: how annotations go onto a signed document."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    with open(path, "rb") as source:
        writer = IncrementalPdfFileWriter(io.BytesIO(source.read()), strict=False)
    for index, annotation in annotations:
        page_ref, _resources = writer.find_page_for_modification(index)
        converted = _to_pyhanko(annotation)
        converted["/P"] = page_ref
        writer.register_annotation(page_ref, writer.add_object(converted))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
