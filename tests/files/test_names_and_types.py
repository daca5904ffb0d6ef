"""Filenames and declared types, without a server."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.errors import Unprocessable
from server.files.content_types import normalise, resolve_kind
from server.files.upload import clean_filename
from tests.files import samples


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Tờ trình.pdf", "Tờ trình.pdf"),
        ("C:\\Users\\thu ky\\Báo cáo.docx", "Báo cáo.docx"),
        ("../../etc/passwd", "passwd"),
        ("a\x00b\x1f.txt", "ab.txt"),
        ("", "file"),
        ("...", "file"),
        ("To\u0300 tri\u0300nh.pdf", "Tò trình.pdf"),  # decomposed marks are composed (NFC)
        ("x" * 300 + ".pdf", "x" * 251 + ".pdf"),
        # Bidirectional controls would show "hồ-sơ\u202efdp.exe" as "hồ-sơexe.pdf".
        ("hồ-sơ\u202efdp.exe", "hồ-sơfdp.exe"),
        ("\u2067a\u2069b\u200e\u200f\u061c\u202a\u202bc\u202c\u202d.pdf", "abc.pdf"),
    ],
)
def test_clean_filename(raw: str, clean: str) -> None:
    assert clean_filename(raw) == clean


def test_declared_types_resolve_to_accepted_kinds(tmp_path: Path) -> None:
    pdf = samples.text_pdf(1)
    assert normalise("Application/PDF; charset=binary") == "application/pdf"
    assert resolve_kind("application/x-pdf", "a", pdf[:4096]).content_type == "application/pdf"
    assert resolve_kind("image/jpg", "a.jpg", b"").content_type == "image/jpeg"
    # Generic types: the extension decides, then the content.
    assert (
        resolve_kind("application/octet-stream", "bien-ban.DOCX", b"").content_type
        == "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    )
    assert resolve_kind("", "scan", samples.png_bytes()[:4096]).content_type == "image/png"
    for declared, name, head in (
        ("text/html", "a.html", b"<html>"),
        ("application/x-rar", "a.rar", b"Rar!"),
        ("application/octet-stream", "a.zip", b"PK\x03\x04"),
        ("application/vnd.ms-word.document.macroenabled.12", "a.docm", b"PK\x03\x04"),
    ):
        with pytest.raises(Unprocessable) as refused:
            resolve_kind(declared, name, head)
        assert refused.value.code == "unsupported_type"
