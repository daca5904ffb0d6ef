"""Opening a signer's key: a slot of a PKCS#11 token (or HSM), or a PKCS#12 file.

The PIN or passphrase is used to open the key and then dropped: nothing here keeps it,
logs it or puts it in an error message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import x509
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers import Signer, SimpleSigner

from server.signing.errors import KeyMissing, PinLocked, TokenAbsent, WrongPin


@dataclass(frozen=True)
class TokenKey:
    """A key and its certificate under ``key_label`` on the token labelled ``token_label``."""

    module: str
    token_label: str
    key_label: str


@dataclass(frozen=True)
class FileKey:
    """A key and its certificate in a PKCS#12 file."""

    path: str


SigningKey = TokenKey | FileKey


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER, lower-case hex (as audit records carry it)."""
    return hashlib.sha256(cert.dump()).hexdigest()


@contextmanager
def _token_signer(key: TokenKey, pin: str) -> Iterator[Signer]:
    import pkcs11
    from pkcs11 import exceptions as p11
    from pyhanko.sign.pkcs11 import PKCS11Signer, p11_lib

    if not key.module or not Path(key.module).is_file():
        raise TokenAbsent("The PKCS#11 module of the signing tokens is not installed.")
    lib = p11_lib(key.module)
    try:
        token = lib.get_token(token_label=key.token_label)
    except (p11.NoSuchToken, p11.MultipleTokensReturned) as exc:
        raise TokenAbsent(f"No signing token labelled {key.token_label!r} is present.") from exc
    try:
        session = token.open(user_pin=pin)
    except (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange) as exc:
        raise WrongPin("The PIN is not correct; nothing was signed.") from exc
    except p11.PinLocked as exc:
        raise PinLocked("The token's PIN is locked; nothing was signed.") from exc
    except (p11.TokenNotPresent, p11.DeviceRemoved, p11.SlotIDInvalid) as exc:
        raise TokenAbsent(f"The token {key.token_label!r} went away.") from exc
    try:
        try:
            signer = PKCS11Signer(
                session, cert_label=key.key_label, key_label=key.key_label, bulk_fetch=False
            )
            signer.signing_cert  # noqa: B018 - loads the certificate now, to fail here
        except (pkcs11.PKCS11Error, SigningError) as exc:
            raise KeyMissing(
                f"The token {key.token_label!r} holds no key and certificate "
                f"labelled {key.key_label!r}."
            ) from exc
        yield signer
    finally:
        session.close()


@contextmanager
def _file_signer(key: FileKey, passphrase: str) -> Iterator[Signer]:
    path = Path(key.path)
    if not path.is_file():
        raise TokenAbsent("The PKCS#12 key file is missing.")
    data = path.read_bytes()
    try:
        signer = SimpleSigner.load_pkcs12_data(
            data, other_certs=(), passphrase=passphrase.encode() or None
        )
    except ValueError as exc:
        raise WrongPin(
            "The passphrase of the key file is not correct; nothing was signed."
        ) from exc
    if signer is None or signer.signing_cert is None:
        raise WrongPin("The key file could not be opened; nothing was signed.")
    yield signer


@contextmanager
def open_signer(key: SigningKey, secret: str) -> Iterator[Signer]:
    """The pyhanko signer of ``key``, opened with its PIN or passphrase (blocking)."""
    if isinstance(key, TokenKey):
        with _token_signer(key, secret) as signer:
            yield signer
    else:
        with _file_signer(key, secret) as signer:
            yield signer
