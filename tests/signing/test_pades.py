"""PAdES B-LT signatures with tokens and PKCS#12 files, checked against the test PKI."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko_certvalidator import ValidationContext

from server.signing.errors import (
    CertificateRefused,
    SigningNotConfigured,
    TokenAbsent,
    WrongPin,
)
from server.signing.keys import FileKey, TokenKey, open_signer
from server.signing.pades import SigningPolicy, sign_pdf
from server.signing.verify import VerifyPolicy, verify_pdf
from tests.signing.documents import (
    change_content,
    corrupt_signature,
    plain_pdf,
    sign_without_checks,
)
from tests.signing.pki import KEY_LABEL, P12_PASSPHRASE, SOFTHSM_MODULE, LoopbackPki, remove_token


def token(label: str) -> TokenKey:
    return TokenKey(str(SOFTHSM_MODULE), label, KEY_LABEL)


def policy(pki: LoopbackPki) -> SigningPolicy:
    return SigningPolicy(pki.tsa_url, (pki.arch.get_cert("root"),))


def verify_policy(pki: LoopbackPki, fetch: bool = False) -> VerifyPolicy:
    return VerifyPolicy((pki.arch.get_cert("root"),), fetch=fetch)


def test_minutes_signed_by_secretary_chair_and_organisation(pki: LoopbackPki) -> None:
    data = plain_pdf()
    fingerprints = []
    for label in ("secretary", "chair", "org"):
        signed = sign_pdf(
            data,
            token(label),
            pki.pin(label),
            policy(pki),
            field_name=f"Ky-{label}",
            reason="Biên bản kỳ họp",
        )
        assert signed.pdf.startswith(data)  # an incremental update, never a rewrite
        data = signed.pdf
        fingerprints.append(signed.fingerprint)
    assert len(set(fingerprints)) == 3

    # pyhanko itself, offline: everything needed is in the file.
    reader = PdfFileReader(io.BytesIO(data))
    dss = DocumentSecurityStore.read_dss(reader)
    assert dss.certs and (dss.ocsps or dss.crls)
    context = dss.as_validation_context(
        {
            "trust_roots": [pki.arch.get_cert("root")],
            "allow_fetching": False,
            "revocation_mode": "hard-fail",
        }
    )
    assert isinstance(context, ValidationContext)
    statuses = [
        validate_pdf_signature(sig, signer_validation_context=context)
        for sig in reader.embedded_signatures
    ]
    assert [s.signing_cert.subject.native["common_name"] for s in statuses] == [
        "Nguyễn Thị Thư Ký",
        "Trần Văn Chủ Tọa",
        "HĐND Thành phố",
    ]
    for status in statuses:
        assert status.bottom_line and status.intact and status.valid and status.trusted
        assert status.timestamp_validity is not None and status.timestamp_validity.trusted

    summaries = verify_pdf(data, verify_policy(pki))
    assert [s["valid"] for s in summaries] == [True, True, True]
    assert [s["certificate_sha256"] for s in summaries] == fingerprints
    assert all(s["timestamp_valid"] and s["timestamp"] for s in summaries)


def test_wrong_pin_is_refused(pki: LoopbackPki) -> None:
    with pytest.raises(WrongPin) as refused:
        sign_pdf(plain_pdf(), token("chair"), "0000", policy(pki), field_name="Ky", reason="x")
    assert refused.value.code == "wrong_pin"
    assert "0000" not in str(refused.value)


def test_revoked_signer_is_refused_and_shown_revoked(pki: LoopbackPki) -> None:
    with pytest.raises(CertificateRefused) as refused:
        sign_pdf(
            plain_pdf(),
            token("revoked"),
            pki.pin("revoked"),
            policy(pki),
            field_name="Ky",
            reason="x",
        )
    assert refused.value.code == "certificate_revoked"
    # A document it signed elsewhere, checked with the CA's OCSP responder.
    forged = sign_without_checks(pki, "revoked", plain_pdf())
    [summary] = verify_pdf(forged, verify_policy(pki, fetch=True))
    assert summary["revoked"] is True and summary["valid"] is False
    assert "revoked" in summary["problems"]


def test_expired_certificate_is_refused(pki: LoopbackPki) -> None:
    with pytest.raises(CertificateRefused) as refused:
        sign_pdf(
            plain_pdf(),
            token("expired"),
            pki.pin("expired"),
            policy(pki),
            field_name="Ky",
            reason="x",
        )
    assert refused.value.code == "certificate_expired"


def test_unknown_trust_root(pki: LoopbackPki) -> None:
    outsider = FileKey(str(pki.pkcs12("outsider")))
    with pytest.raises(CertificateRefused) as refused:
        sign_pdf(
            plain_pdf(), outsider, P12_PASSPHRASE.decode(), policy(pki), field_name="Ky", reason="x"
        )
    assert refused.value.code == "certificate_untrusted"
    [summary] = verify_pdf(sign_without_checks(pki, "outsider", plain_pdf()), verify_policy(pki))
    assert summary["trusted"] is False and "untrusted" in summary["problems"]


def test_absent_token(pki: LoopbackPki) -> None:
    with open_signer(token("spare"), pki.pin("spare")) as signer:
        assert signer.signing_cert is not None
    remove_token(pki, "spare")
    with pytest.raises(TokenAbsent) as refused:
        sign_pdf(
            plain_pdf(), token("spare"), pki.pin("spare"), policy(pki), field_name="Ky", reason="x"
        )
    assert refused.value.code == "token_absent"


def test_pkcs12_signer_and_its_passphrase(pki: LoopbackPki) -> None:
    key = FileKey(str(pki.pkcs12("p12signer")))
    signed = sign_pdf(
        plain_pdf(), key, P12_PASSPHRASE.decode(), policy(pki), field_name="Ky", reason="x"
    )
    [summary] = verify_pdf(signed.pdf, verify_policy(pki))
    assert summary["valid"] and summary["signer_common_name"] == "Người ký PKCS12"
    with pytest.raises(WrongPin):
        sign_pdf(plain_pdf(), key, "not-the-passphrase", policy(pki), field_name="Ky", reason="x")


def test_changed_after_signing_is_reported(pki: LoopbackPki) -> None:
    signed = sign_pdf(
        plain_pdf(),
        token("secretary"),
        pki.pin("secretary"),
        policy(pki),
        field_name="Ky",
        reason="x",
    ).pdf
    [before] = verify_pdf(signed, verify_policy(pki))
    # B-LT adds the validation data in a revision of its own after the signature.
    assert before["valid"] and before["changes_after_signing"] == "validation_data"
    [after] = verify_pdf(change_content(signed), verify_policy(pki))
    assert after["changes_after_signing"] == "content"
    assert after["valid"] is False and "changed" in after["problems"]


def test_corrupt_signature_is_reported(pki: LoopbackPki) -> None:
    signed = sign_pdf(
        plain_pdf(),
        token("secretary"),
        pki.pin("secretary"),
        policy(pki),
        field_name="Ky",
        reason="x",
    ).pdf
    [summary] = verify_pdf(corrupt_signature(signed), verify_policy(pki))
    assert summary["valid"] is False and "corrupt" in summary["problems"]


def test_signing_needs_a_timestamp_authority(pki: LoopbackPki) -> None:
    with pytest.raises(SigningNotConfigured):
        sign_pdf(
            plain_pdf(),
            token("chair"),
            pki.pin("chair"),
            replace(policy(pki), tsa_url=""),
            field_name="Ky",
            reason="x",
        )
