"""Why a signature could not be made: each a clear error, nothing stored as signed."""

from __future__ import annotations

from server.errors import ApiError, Conflict, Unprocessable


class SigningNotConfigured(Conflict):
    code = "signing_not_configured"


class TokenAbsent(Conflict):
    """The signer's token is not present (unplugged, not initialised, wrong label)."""

    code = "token_absent"


class WrongPin(Unprocessable):
    code = "wrong_pin"


class PinLocked(Conflict):
    code = "pin_locked"


class KeyMissing(Unprocessable):
    """The token or file holds no usable key and certificate under the configured label."""

    code = "signing_key_missing"


class CertificateRefused(Unprocessable):
    """The signer's certificate is revoked, expired or not issued by a trusted CA."""

    code = "certificate_invalid"


class TimestampUnavailable(ApiError):
    """The timestamp authority or the CA's OCSP/CRL service could not be reached."""

    status = 502
    code = "timestamp_unavailable"
