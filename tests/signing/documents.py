"""Small PDFs and direct pyhanko signing for the signing tests."""

from __future__ import annotations

import io

from fpdf import FPDF
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko.sign.timestamps.requests_client import RequestsHTTPTimeStamper

from tests.signing.pki import LoopbackPki


def plain_pdf(text: str = "Biên bản kỳ họp thứ nhất", pages: int = 1) -> bytes:
    from server.files.fonts import FONT_REGULAR

    pdf = FPDF()
    pdf.add_font("DejaVu", "", str(FONT_REGULAR))
    pdf.set_font("DejaVu", size=14)
    for n in range(pages):
        pdf.add_page()
        pdf.text(20, 30, f"{text} — trang {n + 1}")
    return bytes(pdf.output())


def sign_without_checks(pki: LoopbackPki, label: str, data: bytes, field: str = "Sig") -> bytes:
    """Sign as ``label`` straight with pyhanko (B-T, no certificate check): what another
    system, or a signer whose certificate was later revoked, may have produced."""
    signer = signers.SimpleSigner.load_pkcs12_data(
        pki.pkcs12(label).read_bytes(), other_certs=(), passphrase=b"p12-passphrase"
    )
    assert signer is not None
    meta = signers.PdfSignatureMetadata(field_name=field, subfilter=fields.SigSeedSubFilter.PADES)
    out = signers.PdfSigner(
        meta, signer=signer, timestamper=RequestsHTTPTimeStamper(pki.tsa_url)
    ).sign_pdf(IncrementalPdfFileWriter(io.BytesIO(data)), output=io.BytesIO())
    assert isinstance(out, io.BytesIO)
    return out.getvalue()


def change_content(data: bytes) -> bytes:
    """An incremental update that rewrites the first page's text (a forgery)."""
    from pyhanko.pdf_utils import generic

    writer = IncrementalPdfFileWriter(io.BytesIO(data))
    page_ref = writer.root["/Pages"]["/Kids"][0]
    page = page_ref.get_object()
    stream = generic.StreamObject(stream_data=b"BT /F1 24 Tf 20 700 Td (FORGED) Tj ET")
    page["/Contents"] = writer.add_object(stream)
    writer.update_container(page)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def corrupt_signature(data: bytes) -> bytes:
    """The same bytes with one hex digit of the last signature's /Contents changed."""
    start = data.rindex(b"/Contents <") + len(b"/Contents <")
    position = start + 400
    digit = data[position : position + 1]
    replacement = b"1" if digit != b"1" else b"2"
    return data[:position] + replacement + data[position + 1 :]
