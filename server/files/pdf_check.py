"""Checking an uploaded PDF: runs inside a worker process (see ``worker.py``).

Two independent parsers must agree the file is a document: pypdf reads the structure,
page tree and metadata (decompressing every content stream, within pypdf's own output
limits), and pdfium, which renders the pages later, must open it with the same page count.
Embedded images may not declare more pixels than allowed, so rendering can not be turned
into a decompression bomb either.

The text of a document (for search) is not read while the uploader waits: ``extract_text``
runs later, as a job of its own in the text workers, with pdfium's text layer.
"""

from __future__ import annotations

from typing import Any

from server.files.worker import JobRejected

# How deep form XObjects are followed when looking for oversized images.
MAX_XOBJECT_DEPTH = 4


def _clean_text(text: str) -> str:
    # PostgreSQL text cannot hold NUL; lone surrogates cannot be encoded.
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def _check_images(resources: Any, max_pixels: int, depth: int, seen: set[int]) -> None:
    from pypdf.generic import DictionaryObject, IndirectObject

    if not isinstance(resources, DictionaryObject) or depth > MAX_XOBJECT_DEPTH:
        return
    xobjects = resources.get("/XObject")
    if xobjects is None:
        return
    xobjects = xobjects.get_object()
    if not isinstance(xobjects, DictionaryObject):
        return
    for ref in xobjects.values():
        if isinstance(ref, IndirectObject):
            if ref.idnum in seen:
                continue
            seen.add(ref.idnum)
        obj = ref.get_object()
        if not isinstance(obj, DictionaryObject):
            continue
        subtype = obj.get("/Subtype")
        if subtype == "/Image":
            width = int(obj.get("/Width", 0) or 0)
            height = int(obj.get("/Height", 0) or 0)
            if width < 0 or height < 0 or width * height > max_pixels:
                raise JobRejected(f"an embedded image declares {width}×{height} pixels")
        elif subtype == "/Form":
            inner = obj.get("/Resources")
            if inner is not None:
                _check_images(inner.get_object(), max_pixels, depth + 1, seen)


def inspect_pdf(path: str, max_pages: int, max_image_pixels: int) -> dict[str, Any]:
    """Pages and title of the PDF at ``path``; JobRejected when it is not acceptable."""
    import pypdfium2 as pdfium
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise JobRejected("the PDF is encrypted with a password")
        pages = len(reader.pages)
        if pages < 1:
            raise JobRejected("the PDF has no pages")
        if pages > max_pages:
            raise JobRejected(f"the PDF has {pages} pages; at most {max_pages} are accepted")
        seen_images: set[int] = set()
        for page in reader.pages:
            contents = page.get_contents()
            if contents is not None:
                contents.get_data()  # decompress: pypdf raises past its output limits
            resources = page.get("/Resources")
            if resources is not None:
                _check_images(resources.get_object(), max_image_pixels, 0, seen_images)
        title = ""
        metadata = reader.metadata
        if metadata is not None and metadata.title:
            title = _clean_text(str(metadata.title)).strip()
    except JobRejected:
        raise
    except PyPdfError as exc:
        raise JobRejected(f"pypdf cannot read it: {exc}") from exc
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as exc:
        raise JobRejected(f"pypdf cannot read it: {type(exc).__name__}: {exc}") from exc
    try:
        document = pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:
        raise JobRejected(f"it cannot be rendered: {exc}") from exc
    try:
        if len(document) != pages:
            raise JobRejected(f"its page tree is inconsistent ({pages} or {len(document)} pages)")
    finally:
        document.close()
    return {"pages": pages, "title": title[:500]}


def extract_text(path: str, max_text_chars: int) -> str:
    """The text of the (already accepted) PDF at ``path``, pages separated by a form feed,
    at most ``max_text_chars`` characters; JobRejected when pdfium cannot read it."""
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:
        raise JobRejected(f"its text cannot be read: {exc}") from exc
    texts: list[str] = []
    kept = 0
    try:
        for index in range(len(document)):
            if kept >= max_text_chars:
                break
            page = document[index]
            try:
                textpage = page.get_textpage()
                try:
                    text = textpage.get_text_range()
                finally:
                    textpage.close()
            finally:
                page.close()
            text = _clean_text(text.replace("\r\n", "\n").replace("\r", "\n"))
            texts.append(text[: max_text_chars - kept])
            kept += len(texts[-1])
    finally:
        document.close()
    return "\n\f".join(texts)
