"""What a council's attachments may be, and checking that the bytes are what they claim.

Accepted: PDF; photos and scans (PNG, JPEG, WebP, GIF); office documents (Word, Excel,
PowerPoint in their OOXML and legacy forms, OpenDocument); plain text and CSV. Not
accepted: anything executable or scriptable (SVG, HTML), macro-enabled office files,
archives (their content cannot be checked), and everything else.

A declared type must match the content: a PDF must start like one, a PNG must be a PNG,
a .docx must be a ZIP package with a Word document inside and no macros. A generic
declared type (``application/octet-stream``, what many clients send) is resolved from the
filename's extension, or failing that from the content.
"""

from __future__ import annotations

import codecs
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from server.errors import Unprocessable

PDF = "application/pdf"
# Types clients send when they do not know better; the filename and content decide.
GENERIC_TYPES = frozenset(
    {
        "",
        "application/octet-stream",
        "binary/octet-stream",
        "application/unknown",
        "application/zip",
        "application/x-zip-compressed",
    }
)
ALIASES = {
    "application/x-pdf": PDF,
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "text/x-csv": "text/csv",
    "application/csv": "text/csv",
}
# PDF readers accept a header anywhere in the first kilobyte.
PDF_HEADER_WINDOW = 1024
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_MAGIC = b"PK\x03\x04"
# Members of a ZIP package looked at to tell its kind (a bound: packages can be huge).
MAX_ZIP_MEMBERS = 20_000


@dataclass(frozen=True)
class Kind:
    content_type: str
    label: str
    extensions: tuple[str, ...]
    # Does the content (first bytes, and the file for deeper checks) match?
    matches: Callable[[bytes, Path], bool]
    # Checking reads more than the first bytes (run it off the event loop).
    deep: bool = False


def _is_pdf(head: bytes, _path: Path) -> bool:
    return b"%PDF-" in head[:PDF_HEADER_WINDOW]


def _prefix(*magics: bytes) -> Callable[[bytes, Path], bool]:
    def check(head: bytes, _path: Path) -> bool:
        return any(head.startswith(magic) for magic in magics)

    return check


def _is_webp(head: bytes, _path: Path) -> bool:
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


def _zip_names(path: Path) -> list[str] | None:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            if len(infos) > MAX_ZIP_MEMBERS:
                return None
            return [info.filename for info in infos]
    except (zipfile.BadZipFile, OSError, ValueError):
        return None


def _ooxml(main_part: str) -> Callable[[bytes, Path], bool]:
    def check(head: bytes, path: Path) -> bool:
        if not head.startswith(ZIP_MAGIC):
            return False
        names = _zip_names(path)
        if names is None or "[Content_Types].xml" not in names:
            return False
        if any(name.lower().endswith("vbaproject.bin") for name in names):
            return False  # macros: refused whatever the extension says
        return any(name.startswith(main_part) for name in names)

    return check


def _odf(mimetype: str) -> Callable[[bytes, Path], bool]:
    def check(head: bytes, path: Path) -> bool:
        # ODF puts an uncompressed "mimetype" member first: its content sits at offset 38.
        return (
            head.startswith(ZIP_MAGIC)
            and head[30:38] == b"mimetype"
            and head[38 : 38 + len(mimetype)] == mimetype.encode()
        )

    return check


def _is_utf8_text(head: bytes, path: Path) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    try:
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                if b"\x00" in block:
                    return False
                decoder.decode(block)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


_OOXML = "application/vnd.openxmlformats-officedocument"
_ODF = "application/vnd.oasis.opendocument"
KINDS: tuple[Kind, ...] = (
    Kind(PDF, "PDF", (".pdf",), _is_pdf),
    Kind("image/png", "PNG image", (".png",), _prefix(b"\x89PNG\r\n\x1a\n")),
    Kind("image/jpeg", "JPEG image", (".jpg", ".jpeg"), _prefix(b"\xff\xd8\xff")),
    Kind("image/webp", "WebP image", (".webp",), _is_webp),
    Kind("image/gif", "GIF image", (".gif",), _prefix(b"GIF87a", b"GIF89a")),
    Kind(
        f"{_OOXML}.wordprocessingml.document",
        "Word document",
        (".docx",),
        _ooxml("word/"),
        deep=True,
    ),
    Kind(f"{_OOXML}.spreadsheetml.sheet", "Excel workbook", (".xlsx",), _ooxml("xl/"), deep=True),
    Kind(
        f"{_OOXML}.presentationml.presentation",
        "PowerPoint presentation",
        (".pptx",),
        _ooxml("ppt/"),
        deep=True,
    ),
    Kind("application/msword", "Word 97-2003 document", (".doc",), _prefix(OLE_MAGIC)),
    Kind("application/vnd.ms-excel", "Excel 97-2003 workbook", (".xls",), _prefix(OLE_MAGIC)),
    Kind(
        "application/vnd.ms-powerpoint",
        "PowerPoint 97-2003 presentation",
        (".ppt",),
        _prefix(OLE_MAGIC),
    ),
    Kind(f"{_ODF}.text", "OpenDocument text", (".odt",), _odf(f"{_ODF}.text")),
    Kind(f"{_ODF}.spreadsheet", "OpenDocument spreadsheet", (".ods",), _odf(f"{_ODF}.spreadsheet")),
    Kind(
        f"{_ODF}.presentation", "OpenDocument presentation", (".odp",), _odf(f"{_ODF}.presentation")
    ),
    Kind("text/plain", "plain text (UTF-8)", (".txt",), _is_utf8_text, deep=True),
    Kind("text/csv", "CSV (UTF-8)", (".csv",), _is_utf8_text, deep=True),
)
BY_TYPE = {kind.content_type: kind for kind in KINDS}
BY_EXTENSION = {ext: kind for kind in KINDS for ext in kind.extensions}
# Recognised from content alone when neither type nor extension says anything.
SNIFFABLE = tuple(BY_TYPE[t] for t in (PDF, "image/png", "image/jpeg", "image/webp", "image/gif"))
ACCEPTED_TEXT = (
    "PDF, PNG/JPEG/WebP/GIF images, Word/Excel/PowerPoint, OpenDocument, plain text or CSV"
)


def normalise(declared: str) -> str:
    """``Application/PDF; charset=binary`` -> ``application/pdf`` (aliases resolved)."""
    value = declared.split(";", 1)[0].strip().lower()
    return ALIASES.get(value, value)


def resolve_kind(declared: str, filename: str, head: bytes) -> Kind:
    """The kind an upload claims to be; 422 ``unsupported_type`` when none we accept."""
    content_type = normalise(declared)
    if content_type not in GENERIC_TYPES:
        kind = BY_TYPE.get(content_type)
        if kind is None:
            raise Unprocessable(
                f"Files of type {content_type!r} are not accepted. Accepted: {ACCEPTED_TEXT}.",
                code="unsupported_type",
            )
        return kind
    extension = Path(filename).suffix.lower()
    if extension in BY_EXTENSION:
        return BY_EXTENSION[extension]
    for kind in SNIFFABLE:
        if kind.matches(head, Path()):
            return kind
    raise Unprocessable(
        f"This kind of file is not accepted. Accepted: {ACCEPTED_TEXT}.", code="unsupported_type"
    )


def check_content(kind: Kind, head: bytes, path: Path) -> None:
    """422 unless the bytes are what ``kind`` says (blocking for deep kinds: use a thread).

    A declared PDF that is not one is ``invalid_pdf``, as the contract has it; any other
    mismatch is ``content_type_mismatch``.
    """
    if kind.matches(head, path):
        return
    if kind.content_type == PDF:
        raise Unprocessable(
            "The file is declared as a PDF but its content is not a PDF.", code="invalid_pdf"
        )
    raise Unprocessable(
        f"The file is declared as {kind.label} ({kind.content_type}) but its content is not.",
        code="content_type_mismatch",
    )
