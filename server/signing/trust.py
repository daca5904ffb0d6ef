"""The operator's trust roots: CA certificates in a PEM/DER file or a directory of them."""

from __future__ import annotations

from pathlib import Path

from asn1crypto import pem, x509

CERT_SUFFIXES = {".pem", ".crt", ".cer", ".der"}


class TrustRootsError(ValueError):
    """The configured trust roots cannot be read."""


def _parsed(der: bytes) -> x509.Certificate:
    cert = x509.Certificate.load(der)
    cert.native  # noqa: B018 - asn1crypto parses lazily: fail here, not while signing
    return cert


def _read(path: Path) -> list[x509.Certificate]:
    data = path.read_bytes()
    if pem.detect(data):
        return [
            _parsed(der)
            for kind, _h, der in pem.unarmor(data, multiple=True)
            if kind == "CERTIFICATE"
        ]
    return [_parsed(data)]


def load_trust_roots(location: str) -> list[x509.Certificate]:
    """Every certificate of ``location`` (a file, or the certificate files of a directory).

    An empty location means no trust roots. Raises ``TrustRootsError`` for a location that
    does not exist or a file that holds no certificate.
    """
    if not location:
        return []
    path = Path(location)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in CERT_SUFFIXES)
    elif path.is_file():
        files = [path]
    else:
        raise TrustRootsError(f"trust roots not found at {location}")
    roots: list[x509.Certificate] = []
    for file in files:
        try:
            roots.extend(_read(file))
        except (ValueError, TypeError) as exc:
            raise TrustRootsError(f"{file} is not a certificate: {exc}") from exc
    if not roots:
        raise TrustRootsError(f"no certificate in {location}")
    return roots
