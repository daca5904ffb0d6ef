"""Signing a PDF: PAdES B-LT with a trusted timestamp and embedded validation data.

Before anything is signed the signer's certificate is validated now, against the
operator's trust roots, with revocation checked online (OCSP or CRL, hard-fail): a
revoked, expired or unknown certificate signs nothing. The revocation data fetched for
that check is what gets embedded (the document security store), with the timestamp's.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import x509
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfReadError
from pyhanko.sign import fields, signers
from pyhanko.sign.general import SigningError
from pyhanko.sign.timestamps.common_utils import TimestampRequestError
from pyhanko.sign.timestamps.requests_client import RequestsHTTPTimeStamper
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import (
    ExpiredError,
    InvalidCertificateError,
    NotYetValidError,
    PathBuildingError,
    PathValidationError,
    RevokedError,
    ValidationError,
)
from pyhanko_certvalidator.fetchers.requests_fetchers import RequestsFetcherBackend

from server.errors import Unprocessable
from server.signing.errors import (
    CertificateRefused,
    SigningNotConfigured,
    TimestampUnavailable,
)
from server.signing.keys import SigningKey, fingerprint, open_signer


@dataclass(frozen=True)
class SigningPolicy:
    """What every signature of this server needs: a TSA and the trust roots."""

    tsa_url: str
    trust_roots: tuple[x509.Certificate, ...]
    network_timeout_secs: float = 10.0


@dataclass(frozen=True)
class Signed:
    pdf: bytes
    fingerprint: str
    subject: str
    # The certificate's common name (the person or the organisation).
    subject_name: str
    field_name: str
    signed_at: datetime


def validation_context(policy: SigningPolicy) -> ValidationContext:
    """Validation now, revocation required, fetched from the CA over HTTP."""
    timeout = policy.network_timeout_secs
    return ValidationContext(
        trust_roots=list(policy.trust_roots),
        allow_fetching=True,
        revocation_mode="hard-fail",
        fetcher_backend=RequestsFetcherBackend(per_request_timeout=timeout),
    )


def check_certificate(
    cert: x509.Certificate, others: list[x509.Certificate], context: ValidationContext
) -> None:
    """Raise ``CertificateRefused`` unless ``cert`` is trusted, current and not revoked."""
    validator = CertificateValidator(cert, intermediate_certs=others, validation_context=context)
    name = cert.subject.native.get("common_name") or cert.subject.human_friendly
    try:
        asyncio.run(validator.async_validate_usage({"non_repudiation"}))
    except RevokedError as exc:
        raise CertificateRefused(
            f"The certificate of {name} is revoked; nothing was signed.", code="certificate_revoked"
        ) from exc
    except (ExpiredError, NotYetValidError) as exc:
        raise CertificateRefused(
            f"The certificate of {name} is not valid at this time "
            "(expired or not yet valid); nothing was signed.",
            code="certificate_expired",
        ) from exc
    except PathBuildingError as exc:
        raise CertificateRefused(
            f"The certificate of {name} was not issued by a trusted authority; nothing was signed.",
            code="certificate_untrusted",
        ) from exc
    except InvalidCertificateError as exc:
        raise CertificateRefused(
            f"The certificate of {name} cannot sign: {exc}.", code="certificate_invalid"
        ) from exc
    except (PathValidationError, ValidationError) as exc:
        # Revocation status could not be established (the CA's OCSP/CRL unreachable).
        raise TimestampUnavailable(
            f"The revocation status of the certificate of {name} could not be checked: {exc}.",
            code="revocation_unavailable",
        ) from exc


def sign_pdf(
    data: bytes,
    key: SigningKey,
    secret: str,
    policy: SigningPolicy,
    *,
    field_name: str,
    reason: str,
    location: str = "",
) -> Signed:
    """Sign ``data`` (a PDF) with ``key`` as a new signature field: PAdES B-LT (blocking).

    The document is extended by an incremental update, so earlier signatures stay valid.
    """
    if not policy.tsa_url:
        raise SigningNotConfigured(
            "No timestamp authority is configured (DIENHONG_SIGNING_TSA_URL)."
        )
    if not policy.trust_roots:
        raise SigningNotConfigured("No trust roots are configured (DIENHONG_SIGNING_TRUST_ROOTS).")
    try:
        writer = IncrementalPdfFileWriter(io.BytesIO(data), strict=False)
    except (PdfReadError, ValueError) as exc:
        raise Unprocessable(f"The document cannot be signed: {exc}.", code="invalid_pdf") from exc
    context = validation_context(policy)
    with open_signer(key, secret) as signer:
        cert = signer.signing_cert
        assert cert is not None
        others = list(signer.cert_registry)
        check_certificate(cert, others, context)
        meta = signers.PdfSignatureMetadata(
            field_name=field_name,
            reason=reason,
            location=location or None,
            subfilter=fields.SigSeedSubFilter.PADES,
            embed_validation_info=True,
            validation_context=context,
            use_pades_lta=False,
        )
        timestamper = RequestsHTTPTimeStamper(policy.tsa_url, timeout=policy.network_timeout_secs)
        pdf_signer = signers.PdfSigner(meta, signer=signer, timestamper=timestamper)
        try:
            out = pdf_signer.sign_pdf(writer, output=io.BytesIO())
        except TimestampRequestError as exc:
            raise TimestampUnavailable(f"The timestamp authority did not answer: {exc}.") from exc
        except SigningError as exc:
            raise CertificateRefused(f"The document could not be signed: {exc}.") from exc
    assert isinstance(out, io.BytesIO)
    return Signed(
        pdf=out.getvalue(),
        fingerprint=fingerprint(cert),
        subject=cert.subject.human_friendly,
        subject_name=str(cert.subject.native.get("common_name") or ""),
        field_name=field_name,
        signed_at=datetime.now().astimezone(),
    )
