"""What the signatures of a PDF say: signer, time, timestamp, trust, revocation, changes.

Validation uses the operator's trust roots and the validation data embedded in the file
(its document security store); with ``fetch`` it may also ask the CAs named in the
certificates for current OCSP responses or CRLs. Each signature gets a plain summary
that the API returns as is and the clients turn into a badge.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from asn1crypto import x509
from pyhanko.pdf_utils.misc import PdfReadError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.errors import NoDSSFoundError, SignatureValidationError
from pyhanko.sign.validation.status import PdfSignatureStatus
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.fetchers.requests_fetchers import RequestsFetcherBackend

from server.signing.diff import DIFF_POLICY
from server.signing.keys import fingerprint

# What changed in the file after a signature, from least to most serious.
CHANGES = {
    None: "none",
    ModificationLevel.NONE: "none",
    ModificationLevel.LTA_UPDATES: "validation_data",
    ModificationLevel.FORM_FILLING: "form_filling",
    ModificationLevel.ANNOTATIONS: "annotations",
    ModificationLevel.OTHER: "content",
}


@dataclass(frozen=True)
class VerifyPolicy:
    trust_roots: tuple[x509.Certificate, ...]
    fetch: bool
    network_timeout_secs: float = 10.0
    max_signatures: int = 20


def has_signatures(data: bytes) -> bool:
    """True when the PDF has at least one filled signature field (cheap, blocking)."""
    try:
        return bool(PdfFileReader(io.BytesIO(data), strict=False).embedded_signatures)
    except (PdfReadError, ValueError, KeyError, TypeError):
        return False


def _context(policy: VerifyPolicy, reader: PdfFileReader) -> ValidationContext:
    kwargs: dict[str, Any] = {
        "trust_roots": list(policy.trust_roots),
        "allow_fetching": policy.fetch,
        "revocation_mode": "soft-fail",
        "fetcher_backend": RequestsFetcherBackend(per_request_timeout=policy.network_timeout_secs),
    }
    try:
        dss = DocumentSecurityStore.read_dss(reader)
    except (NoDSSFoundError, KeyError, ValueError, TypeError, PdfReadError):
        return ValidationContext(**kwargs)
    return dss.as_validation_context(kwargs)


def _iso(moment: Any) -> str | None:
    return moment.isoformat() if moment is not None else None


def _summary(name: str, status: PdfSignatureStatus) -> dict[str, Any]:
    cert = status.signing_cert
    ts = status.timestamp_validity
    revoked = status.revocation_details is not None
    changes = CHANGES.get(status.modification_level, "content")
    problems: list[str] = []
    if not status.intact or not status.valid:
        problems.append("corrupt")
    if revoked:
        problems.append("revoked")
    elif not status.trusted:
        problems.append("untrusted")
    if ts is not None and not (ts.valid and ts.intact and ts.trusted):
        problems.append("timestamp_invalid")
    if changes == "content" or status.docmdp_ok is False:
        problems.append("changed")
    return {
        "field": name,
        "signer": cert.subject.human_friendly,
        "signer_common_name": cert.subject.native.get("common_name", ""),
        "issuer": cert.issuer.human_friendly,
        "certificate_sha256": fingerprint(cert),
        "signing_time": _iso(status.signer_reported_dt),
        "timestamp": _iso(ts.timestamp) if ts is not None else None,
        "timestamp_valid": bool(ts and ts.valid and ts.intact and ts.trusted),
        "intact": bool(status.intact and status.valid),
        "trusted": bool(status.trusted),
        "revoked": revoked,
        "revoked_at": _iso(status.revocation_details.revocation_date)
        if status.revocation_details is not None
        else None,
        "changes_after_signing": changes,
        "valid": not problems,
        "problems": problems,
    }


def verify_pdf(data: bytes, policy: VerifyPolicy) -> list[dict[str, Any]]:
    """One summary per signature of the PDF, in signing order (blocking: run in a thread).

    A signature that cannot be parsed at all is reported with ``problems: ["corrupt"]``.
    """
    try:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        signatures = reader.embedded_signatures
    except (PdfReadError, ValueError, KeyError, TypeError):
        return []
    result: list[dict[str, Any]] = []
    for sig in signatures[: policy.max_signatures]:
        try:
            status = validate_pdf_signature(
                sig, signer_validation_context=_context(policy, reader), diff_policy=DIFF_POLICY
            )
        except (SignatureValidationError, PdfReadError, ValueError, KeyError, TypeError) as exc:
            result.append(
                {
                    "field": sig.field_name,
                    "signer": "",
                    "signer_common_name": "",
                    "issuer": "",
                    "certificate_sha256": None,
                    "signing_time": None,
                    "timestamp": None,
                    "timestamp_valid": False,
                    "intact": False,
                    "trusted": False,
                    "revoked": False,
                    "revoked_at": None,
                    "changes_after_signing": "content",
                    "valid": False,
                    "problems": ["corrupt"],
                    "error": str(exc)[:300],
                }
            )
            continue
        result.append(_summary(sig.field_name, status))
    return result


def verify_file(
    path: str,
    trust_roots_der: list[bytes],
    fetch: bool,
    network_timeout_secs: float,
    max_signatures: int,
) -> list[dict[str, Any]]:
    """``verify_pdf`` of a file, with plain arguments: a job of the PDF worker processes."""
    with open(path, "rb") as f:
        data = f.read()
    policy = VerifyPolicy(
        trust_roots=tuple(x509.Certificate.load(der) for der in trust_roots_der),
        fetch=fetch,
        network_timeout_secs=network_timeout_secs,
        max_signatures=max_signatures,
    )
    return verify_pdf(data, policy)
