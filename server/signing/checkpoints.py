"""The organisation's signature on audit checkpoints, and its verification.

Each checkpoint of the audit chain (``server.audit_anchor``) is signed by the node's
Ed25519 key, which lives on the server's disk: whoever can rewrite the database can
usually read that key too. With the organisation's seal configured (a PKCS#11 token or a
PKCS#12 file, ``DIENHONG_SIGNING_ORG_*``) every checkpoint also carries the seal's
signature: a detached CMS (PKCS#7) SignedData over the checkpoint's canonical bytes, with
the seal's certificate inside. It is verified against the operator's trust roots here,
and with nothing but ``openssl cms -verify`` by anyone else (see the README).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import dataclass, field

from asn1crypto import cms, x509
from pyhanko.sign.general import SigningError
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.sign.validation.generic_cms import async_validate_detached_cms
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.errors import PathBuildingError, PathValidationError
from pyhanko_certvalidator.fetchers.requests_fetchers import RequestsFetcherBackend

from server.audit_anchor import Checkpoint
from server.settings import Settings
from server.signing.config import organisation_key
from server.signing.errors import SigningNotConfigured
from server.signing.keys import SigningKey, fingerprint, open_signer

log = logging.getLogger("dienhong.audit")

DIGEST = "sha256"


class OrganisationCountersigner:
    """Signs a checkpoint's payload with the organisation's seal (opens the key each time)."""

    def __init__(self, key: SigningKey, secret: str) -> None:
        self._key = key
        self._secret = secret

    def countersign(self, payload: bytes) -> bytes:
        """A detached CMS SignedData of ``payload``, DER (blocking)."""
        with open_signer(self._key, self._secret) as signer:
            try:
                info = asyncio.run(signer.async_sign_general_data(payload, DIGEST, detached=True))
            except SigningError as exc:
                raise SigningNotConfigured(
                    f"The organisation's key could not sign the audit checkpoint: {exc}."
                ) from exc
        return info.dump()


def organisation_countersigner(settings: Settings) -> OrganisationCountersigner | None:
    """The seal's countersigner when one is configured, else None (a misconfigured seal is
    logged and checkpoints are then signed by the node alone)."""
    try:
        found = organisation_key(settings)
    except SigningNotConfigured as exc:
        log.error("audit checkpoints are not signed by the organisation: %s", exc)
        return None
    return None if found is None else OrganisationCountersigner(*found)


def common_name(cert: x509.Certificate) -> str:
    return str(cert.subject.native.get("common_name") or cert.subject.human_friendly)


@dataclass
class OrganisationCheck:
    """Checks the organisation's signatures of checkpoints against trust roots.

    Once a checkpoint carries the organisation's signature every later one must carry one
    too (the server writes none without it while the seal is configured), so stripping the
    signatures from the newest lines does not go unnoticed. ``signers`` collects who signed:
    certificate fingerprint -> common name.
    """

    trust_roots: tuple[x509.Certificate, ...]
    fetch: bool = True
    network_timeout_secs: float = 10.0
    signers: dict[str, str] = field(default_factory=dict)
    countersigned: int = 0

    def __call__(self, checkpoint: Checkpoint) -> str | None:
        if not checkpoint.org_signature:
            if self.countersigned:
                return "it lacks the organisation's signature that earlier checkpoints carry"
            return None
        if not self.trust_roots:
            return (
                "it is signed by the organisation but no trust roots are configured to "
                "check that signature (DIENHONG_SIGNING_TRUST_ROOTS or --trust-roots)"
            )
        problem = self._problem(checkpoint)
        if problem is None:
            self.countersigned += 1
        return problem

    def _problem(self, checkpoint: Checkpoint) -> str | None:
        try:
            der = base64.b64decode(checkpoint.org_signature, validate=True)
            info = cms.ContentInfo.load(der)
            if info["content_type"].native != "signed_data":
                return "the organisation's signature is not a CMS SignedData"
            signed = info["content"]
            signed.native  # noqa: B018 - asn1crypto parses lazily: fail here
        except (ValueError, TypeError, KeyError):
            return "the organisation's signature cannot be read"
        context = ValidationContext(
            trust_roots=list(self.trust_roots),
            allow_fetching=self.fetch,
            revocation_mode="soft-fail",
            fetcher_backend=RequestsFetcherBackend(per_request_timeout=self.network_timeout_secs),
        )
        try:
            status = asyncio.run(
                async_validate_detached_cms(
                    checkpoint.payload(), signed, signer_validation_context=context
                )
            )
        except (
            SignatureValidationError,
            PathBuildingError,
            PathValidationError,
            ValueError,
            TypeError,
            KeyError,
        ) as exc:
            return f"the organisation's signature does not verify: {exc}"
        cert = status.signing_cert
        name = common_name(cert)
        if not status.intact or not status.valid:
            return (
                f"the organisation's signature by {name} does not verify (the checkpoint "
                "was changed after it was signed)"
            )
        if status.revoked:
            return f"the organisation's certificate of {name} is revoked"
        if not status.trusted:
            return (
                f"the organisation's signature by {name} was not made with a certificate "
                "of the trusted roots"
            )
        self.signers[fingerprint(cert)] = name
        return None


def organisation_signer(checkpoint: Checkpoint) -> tuple[str, str] | None:
    """The common name and fingerprint of the certificate the organisation's signature of a
    checkpoint names (read for print, not validated: ``OrganisationCheck`` does that), or
    None when it has none or it cannot be read."""
    if not checkpoint.org_signature:
        return None
    try:
        signed = cms.ContentInfo.load(base64.b64decode(checkpoint.org_signature, validate=True))[
            "content"
        ]
        sid = signed["signer_infos"][0]["sid"].chosen
        for choice in signed["certificates"]:
            cert = choice.chosen
            if (
                isinstance(sid, cms.IssuerAndSerialNumber)
                and cert.serial_number == sid["serial_number"].native
                and cert.issuer == sid["issuer"]
            ):
                return common_name(cert), fingerprint(cert)
    except (ValueError, TypeError, KeyError, IndexError):
        return None
    return None
