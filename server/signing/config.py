"""The signing keys and policies the settings describe (``DIENHONG_SIGNING_*``)."""

from __future__ import annotations

from asn1crypto import x509

from server.settings import Settings
from server.signing.errors import SigningNotConfigured
from server.signing.keys import FileKey, SigningKey, TokenKey
from server.signing.pades import SigningPolicy
from server.signing.trust import TrustRootsError, load_trust_roots
from server.signing.verify import VerifyPolicy


def person_key(settings: Settings, username: str) -> TokenKey:
    """The key on a person's own token (the PIN is theirs to give at signing time)."""
    if not settings.signing_pkcs11_module:
        raise SigningNotConfigured(
            "No PKCS#11 module is configured for personal tokens (DIENHONG_SIGNING_PKCS11_MODULE)."
        )
    label = settings.signing_person_token_label.replace("{username}", username)
    return TokenKey(settings.signing_pkcs11_module, label, settings.signing_key_label)


def organisation_key(settings: Settings) -> tuple[SigningKey, str] | None:
    """The organisation's key and its secret, or None when no seal is configured."""
    if settings.signing_org_token_label:
        if not settings.signing_pkcs11_module:
            raise SigningNotConfigured(
                "DIENHONG_SIGNING_ORG_TOKEN_LABEL needs DIENHONG_SIGNING_PKCS11_MODULE."
            )
        return (
            TokenKey(
                settings.signing_pkcs11_module,
                settings.signing_org_token_label,
                settings.signing_key_label,
            ),
            settings.signing_org_pin,
        )
    if settings.signing_org_pkcs12:
        return FileKey(settings.signing_org_pkcs12), settings.signing_org_pkcs12_passphrase
    return None


def _roots(settings: Settings) -> tuple[x509.Certificate, ...]:
    try:
        return tuple(load_trust_roots(settings.signing_trust_roots))
    except (TrustRootsError, OSError) as exc:
        raise SigningNotConfigured(f"The trust roots cannot be read: {exc}.") from exc


def signing_policy(settings: Settings) -> SigningPolicy:
    """TSA and trust roots for making signatures (reads the roots: blocking)."""
    return SigningPolicy(
        tsa_url=settings.signing_tsa_url,
        trust_roots=_roots(settings),
        network_timeout_secs=settings.signing_network_timeout_secs,
    )


def verify_policy(settings: Settings) -> VerifyPolicy:
    """Trust roots and fetching rules for checking signed uploads (blocking)."""
    return VerifyPolicy(
        trust_roots=_roots(settings),
        fetch=settings.signing_fetch_revocation,
        network_timeout_secs=settings.signing_network_timeout_secs,
        max_signatures=settings.signing_max_signatures,
    )
