"""Stamped copies: active content removed from unsigned PDFs; signed PDFs are stamped by
an incremental update that leaves every original signature valid."""

from __future__ import annotations

import io
from pathlib import Path

from pypdf import PdfReader, PdfWriter
from pypdf.generic import (
    ArrayObject,
    DictionaryObject,
    NameObject,
    NumberObject,
    TextStringObject,
)

from server.files.stamping import stamp_pdf
from tests.signing.documents import plain_pdf


def with_active_content(data: bytes) -> bytes:
    """A PDF that runs JavaScript on opening, on page open, from a link and a name tree."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))

    def js(code: str) -> DictionaryObject:
        return DictionaryObject(
            {NameObject("/S"): NameObject("/JavaScript"), NameObject("/JS"): TextStringObject(code)}
        )

    root = writer._root_object
    root[NameObject("/OpenAction")] = js("app.alert('open')")
    root[NameObject("/AA")] = DictionaryObject({NameObject("/WC"): js("app.alert('close')")})
    root[NameObject("/Names")] = DictionaryObject(
        {
            NameObject("/JavaScript"): DictionaryObject(
                {
                    NameObject("/Names"): ArrayObject(
                        [TextStringObject("a"), js("app.alert('tree')")]
                    )
                }
            )
        }
    )
    page = writer.pages[0]
    page[NameObject("/AA")] = DictionaryObject({NameObject("/O"): js("app.alert('page')")})
    link = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Annot"),
            NameObject("/Subtype"): NameObject("/Link"),
            NameObject("/Rect"): ArrayObject(
                [NumberObject(0), NumberObject(0), NumberObject(50), NumberObject(50)]
            ),
            NameObject("/A"): DictionaryObject(
                {
                    NameObject("/S"): NameObject("/Launch"),
                    NameObject("/F"): TextStringObject("calc.exe"),
                }
            ),
        }
    )
    writer.add_annotation(0, link)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_stamping_removes_active_content(tmp_path: Path) -> None:
    source = tmp_path / "in.pdf"
    source.write_bytes(with_active_content(plain_pdf(pages=2)))
    before = source.read_bytes()
    assert b"/JavaScript" in before and b"/Launch" in before and b"/OpenAction" in before
    result = stamp_pdf(str(source), str(tmp_path / "out.pdf"), "Bản của A", "A", {})
    assert result["active_content_removed"] == 5 and result["incremental"] is False
    stamped = (tmp_path / "out.pdf").read_bytes()
    reader = PdfReader(io.BytesIO(stamped))
    root = reader.trailer["/Root"]
    assert "/OpenAction" not in root and "/AA" not in root
    assert "/JavaScript" not in root["/Names"]
    assert "/AA" not in reader.pages[0]
    for ref in reader.pages[0]["/Annots"]:
        assert "/A" not in ref.get_object()
    assert b"/JavaScript" not in stamped and b"/Launch" not in stamped
    assert "Bản của A" in reader.pages[1].extract_text()


def test_a_destination_open_action_is_kept(tmp_path: Path) -> None:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(plain_pdf(pages=2))))
    writer._root_object[NameObject("/OpenAction")] = ArrayObject(
        [writer.pages[1].indirect_reference, NameObject("/Fit")]
    )
    out = io.BytesIO()
    writer.write(out)
    source = tmp_path / "in.pdf"
    source.write_bytes(out.getvalue())
    result = stamp_pdf(str(source), str(tmp_path / "out.pdf"), "Bản của A", "A", {})
    assert result["active_content_removed"] == 0
    assert "/OpenAction" in PdfReader(tmp_path / "out.pdf").trailer["/Root"]
