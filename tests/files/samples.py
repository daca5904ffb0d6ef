"""PDFs and other files of every shape the tests need, generated on the spot."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

from fpdf import FPDF

from server.files.fonts import FONT_BOLD, FONT_REGULAR

VIETNAMESE = "Nghị quyết về kế hoạch phát triển kinh tế - xã hội năm 2027 của Thành phố"


def _pdf() -> FPDF:
    pdf = FPDF()
    pdf.add_font("DejaVu", "", str(FONT_REGULAR))
    pdf.add_font("DejaVu", "B", str(FONT_BOLD))
    pdf.set_font("DejaVu", size=12)
    return pdf


def text_pdf(pages: int = 1, text: str = VIETNAMESE, title: str = "") -> bytes:
    """``pages`` pages, each with a heading naming its number and one line of ``text``."""
    pdf = _pdf()
    if title:
        pdf.set_title(title)
    for number in range(1, pages + 1):
        pdf.add_page()
        pdf.set_font("DejaVu", "B", 16)
        pdf.cell(0, 10, f"Trang {number}", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("DejaVu", size=12)
        pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def png_bytes(width: int = 64, height: int = 48) -> bytes:
    """A small RGB PNG (a gradient), written by hand."""
    raw = bytearray()
    for y in range(height):
        raw.append(0)
        for x in range(width):
            raw += bytes((x * 4 % 256, y * 5 % 256, 128))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(raw)))
        + chunk(b"IEND", b"")
    )


def image_pdf() -> bytes:
    """Two pages with a photo each and a caption."""
    pdf = _pdf()
    for caption in ("Ảnh hiện trường số 1", "Ảnh hiện trường số 2"):
        pdf.add_page()
        pdf.image(io.BytesIO(png_bytes(160, 120)), x=20, y=20, w=120)
        pdf.set_xy(20, 120)
        pdf.cell(0, 10, caption)
    return bytes(pdf.output())


def form_pdf() -> bytes:
    """A one-page AcroForm (text field and checkbox) made with pypdf."""
    from pypdf import PdfWriter
    from pypdf.generic import (
        ArrayObject,
        BooleanObject,
        DictionaryObject,
        FloatObject,
        NameObject,
        NumberObject,
        TextStringObject,
    )

    base = text_pdf(1, "Phiếu lấy ý kiến đại biểu")
    writer = PdfWriter(clone_from=io.BytesIO(base))
    page = writer.pages[0]
    field = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Annot"),
            NameObject("/Subtype"): NameObject("/Widget"),
            NameObject("/FT"): NameObject("/Tx"),
            NameObject("/T"): TextStringObject("y_kien"),
            NameObject("/V"): TextStringObject("Đồng ý"),
            NameObject("/Rect"): ArrayObject(
                [FloatObject(50), FloatObject(600), FloatObject(300), FloatObject(630)]
            ),
            NameObject("/F"): NumberObject(4),
            NameObject("/DA"): TextStringObject("/Helv 12 Tf 0 g"),
        }
    )
    ref = writer._add_object(field)
    field[NameObject("/P")] = page.indirect_reference
    page[NameObject("/Annots")] = ArrayObject([ref])
    writer._root_object[NameObject("/AcroForm")] = DictionaryObject(
        {
            NameObject("/Fields"): ArrayObject([ref]),
            NameObject("/NeedAppearances"): BooleanObject(True),
        }
    )
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# --- hand-built PDFs for hostile shapes -----------------------------------------------


def raw_pdf(objects: list[bytes], root: int = 1) -> bytes:
    """A PDF whose numbered objects are exactly ``objects`` (1-based), with a correct xref."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        root,
        xref,
    )
    return bytes(out)


def _stream(data: bytes, extra: bytes = b"") -> bytes:
    return b"<< /Length %d %s >>\nstream\n" % (len(data), extra) + data + b"\nendstream"


def cropped_pdf() -> bytes:
    """A landscape page shown through a crop box smaller than its media box, rotated."""
    from pypdf import PdfWriter
    from pypdf.generic import RectangleObject

    writer = PdfWriter(clone_from=io.BytesIO(text_pdf(2)))
    for page in writer.pages:
        page.cropbox = RectangleObject([30, 40, 560, 800])
    writer.pages[1].rotate(90)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def cyclic_pdf() -> bytes:
    """The page tree lists itself among its own kids."""
    return raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R 2 0 R] /Count 2 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
        ]
    )


def bomb_pdf(megabytes: int = 100, pages: int = 1) -> bytes:
    """Pages whose content streams of some 100 KB each inflate to ``megabytes`` MB."""
    compressor = zlib.compressobj(9)
    block = b"\0" * (1 << 20)
    data = b"".join(compressor.compress(block) for _ in range(megabytes)) + compressor.flush()
    kids = b" ".join(b"%d 0 R" % (3 + 2 * i) for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % pages,
    ]
    for i in range(pages):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Contents %d 0 R >>" % (4 + 2 * i)
        )
        objects.append(_stream(data, b"/Filter /FlateDecode"))
    return raw_pdf(objects)


def image_bomb_pdf() -> bytes:
    """A page drawing an image that declares 100,000 × 100,000 pixels."""
    data = zlib.compress(b"\0" * 1024)
    return raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            b"/Resources << /XObject << /Im1 5 0 R >> >> >>",
            _stream(b"q 612 0 0 792 0 0 cm /Im1 Do Q"),
            _stream(
                data,
                b"/Type /XObject /Subtype /Image /Width 100000 /Height 100000 "
                b"/ColorSpace /DeviceGray /BitsPerComponent 8 /Filter /FlateDecode",
            ),
        ]
    )


def slow_pdf(pages: int = 40, operators: int = 50_000) -> bytes:
    """Pages sharing one tiny compressed content stream of ``operators`` text operators.

    Each page costs pypdf seconds of CPU to read; together, far longer than any time
    limit: to the server this file is a parser that never finishes.
    """
    content = zlib.compress(b"BT /F1 12 Tf 10 10 Td (x) Tj ET\n" * operators, 9)
    kids = b" ".join(b"%d 0 R" % (5 + i) for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % pages,
        _stream(content, b"/Filter /FlateDecode"),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for _ in range(pages):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Contents 3 0 R /Resources << /Font << /F1 4 0 R >> >> >>"
        )
    return raw_pdf(objects)


def encrypted_pdf(user_password: str = "mat-khau") -> bytes:
    """A PDF encrypted with AES; with an empty user password anyone may open it (only
    the owner's permissions are restricted, as many official documents are)."""
    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=io.BytesIO(text_pdf(1)))
    writer.encrypt(user_password=user_password, owner_password="chu-so-huu", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def docx_bytes(macros: bool = False) -> bytes:
    """A minimal Word package (enough for the type check)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as package:
        package.writestr("[Content_Types].xml", "<Types/>")
        package.writestr("word/document.xml", "<w:document/>")
        if macros:
            package.writestr("word/vbaProject.bin", b"\0" * 64)
    return out.getvalue()
