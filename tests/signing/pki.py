"""A complete test PKI on loopback: CA, OCSP responder, CRL and TSA (certomancer), and a
SoftHSM2 token per signer holding its key and certificate.

The certomancer WSGI app is served by a real HTTP server on an ephemeral loopback port,
so signing and validation fetch OCSP responses, CRLs and timestamps over HTTP exactly as
they would from a real CA.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

ARCH = "dienhong-test"
SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
SO_PIN = "5555"
# Signers with a token each: label -> (common name, PIN).
TOKEN_SIGNERS = {
    "secretary": ("Nguyễn Thị Thư Ký", "1111"),
    "chair": ("Trần Văn Chủ Tọa", "2222"),
    "org": ("HĐND Thành phố", "3333"),
    "revoked": ("Lê Văn Thu Hồi", "4444"),
    "expired": ("Phạm Văn Hết Hạn", "6666"),
    "standing": ("Hoàng Văn Thường Trực", "8888"),
    # A token the tests take away, as if it were unplugged.
    "spare": ("Đỗ Văn Dự Phòng", "7777"),
}
# Keys of the PKI itself and of signers that only exist as PKCS#12 files.
OTHER_KEYS = ("root", "ocsp", "tsa", "outsider-root", "outsider", "p12signer")
KEY_LABEL = "signing"
P12_PASSPHRASE = b"p12-passphrase"

_LONG = {"valid-from": "2020-01-01T00:00:00+0000", "valid-to": "2100-01-01T00:00:00+0000"}


def _signer_cert(issuer: str, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "issuer": issuer,
        "validity": dict(_LONG),
        "extensions": [
            {
                "id": "key_usage",
                "critical": True,
                "smart-value": {
                    "schema": "key-usage",
                    "params": ["digital_signature", "non_repudiation"],
                },
            },
            {
                "id": "crl_distribution_points",
                "smart-value": {"schema": "crl-dist-url", "params": {"crl-repo-names": [issuer]}},
            },
            {
                "id": "authority_information_access",
                "smart-value": {"schema": "aia-urls", "params": {"ocsp-responder-names": [issuer]}},
            },
        ],
    }
    spec.update(extra)
    return spec


def _ca_cert(label: str) -> dict[str, Any]:
    return {
        "subject": label,
        "subject-key": label,
        "issuer": label,
        "authority-key": label,
        "validity": {
            "valid-from": "2000-01-01T00:00:00+0000",
            "valid-to": "2500-01-01T00:00:00+0000",
        },
        "extensions": [
            {"id": "basic_constraints", "critical": True, "value": {"ca": True}},
            {
                "id": "key_usage",
                "critical": True,
                "smart-value": {
                    "schema": "key-usage",
                    "params": ["digital_signature", "key_cert_sign", "crl_sign"],
                },
            },
        ],
    }


def _config(key_dir: Path, url: str) -> dict[str, Any]:
    labels = list(TOKEN_SIGNERS) + list(OTHER_KEYS)
    entities: dict[str, Any] = {
        "root": {"common-name": "CA thử nghiệm Diên Hồng"},
        "ocsp": {"common-name": "OCSP thử nghiệm"},
        "tsa": {"common-name": "TSA thử nghiệm"},
        "outsider-root": {"common-name": "CA không được tin cậy"},
        "outsider": {"common-name": "Người ngoài"},
        "p12signer": {"common-name": "Người ký PKCS12"},
    }
    for label, (name, _pin) in TOKEN_SIGNERS.items():
        entities[label] = {"common-name": name}
    certs: dict[str, Any] = {
        "root": _ca_cert("root"),
        "outsider-root": _ca_cert("outsider-root"),
        "ocsp": {
            "issuer": "root",
            "validity": dict(_LONG),
            "extensions": [
                {
                    "id": "key_usage",
                    "critical": True,
                    "smart-value": {"schema": "key-usage", "params": ["digital_signature"]},
                },
                {"id": "extended_key_usage", "critical": True, "value": ["ocsp_signing"]},
                {"id": "ocsp_no_check"},
            ],
        },
        "tsa": {
            "issuer": "root",
            "validity": dict(_LONG),
            "extensions": [
                {
                    "id": "key_usage",
                    "critical": True,
                    "smart-value": {"schema": "key-usage", "params": ["digital_signature"]},
                },
                {"id": "extended_key_usage", "critical": True, "value": ["time_stamping"]},
                {
                    "id": "crl_distribution_points",
                    "smart-value": {
                        "schema": "crl-dist-url",
                        "params": {"crl-repo-names": ["root"]},
                    },
                },
            ],
        },
        "secretary": _signer_cert("root"),
        "chair": _signer_cert("root"),
        "org": _signer_cert("root"),
        "spare": _signer_cert("root"),
        "standing": _signer_cert("root"),
        "p12signer": _signer_cert("root"),
        "revoked": _signer_cert(
            "root",
            revocation={"revoked-since": "2021-01-01T00:00:00+0000", "reason": "key_compromise"},
        ),
        "expired": _signer_cert(
            "root",
            validity={
                "valid-from": "2020-01-01T00:00:00+0000",
                "valid-to": "2021-01-01T00:00:00+0000",
            },
        ),
        "outsider": _signer_cert("outsider-root"),
    }
    return {
        "external-url-prefix": url,
        "keysets": {
            "test": {
                "path-prefix": str(key_dir),
                "keys": {label: {"path": f"{label}.key.pem"} for label in labels},
            }
        },
        "pki-architectures": {
            ARCH: {
                "keyset": "test",
                "entity-defaults": {
                    "country-name": "VN",
                    "organization-name": "Diên Hồng thử nghiệm",
                },
                "entities": entities,
                "certs": certs,
                "services": {
                    "ocsp": {
                        "root": {
                            "for-issuer": "root",
                            "responder-cert": "ocsp",
                            "signing-key": "ocsp",
                        },
                        "outsider-root": {
                            "for-issuer": "outsider-root",
                            "responder-cert": "outsider-root",
                            "signing-key": "outsider-root",
                        },
                    },
                    "crl-repo": {
                        "root": {
                            "for-issuer": "root",
                            "signing-key": "root",
                            "simulated-update-schedule": "P30D",
                        },
                        "outsider-root": {
                            "for-issuer": "outsider-root",
                            "signing-key": "outsider-root",
                            "simulated-update-schedule": "P30D",
                        },
                    },
                    "cert-repo": {"root": {"for-issuer": "root", "publish-issued-certs": True}},
                    "time-stamping": {"tsa": {"signing-key": "tsa", "signing-cert": "tsa"}},
                },
            }
        },
    }


@dataclass
class LoopbackPki:
    root: Path
    url: str
    arch: Any
    softhsm_conf: Path

    @property
    def tsa_url(self) -> str:
        return f"{self.url}/{ARCH}/tsa/tsa"

    def cert_pem(self, label: str) -> bytes:
        from asn1crypto import pem

        return pem.armor("CERTIFICATE", self.arch.get_cert(label).dump())

    def trust_bundle(self, *labels: str) -> Path:
        """A PEM bundle of the named CA certificates (the operator's trust roots)."""
        path = self.root / ("trust-" + "-".join(labels) + ".pem")
        path.write_bytes(b"".join(self.cert_pem(label) for label in labels))
        return path

    def pkcs12(self, label: str, passphrase: bytes = P12_PASSPHRASE) -> Path:
        """A PKCS#12 file with the key and certificate of ``label``."""
        from cryptography.hazmat.primitives.serialization import pkcs12
        from cryptography.x509 import load_der_x509_certificate

        key = serialization.load_pem_private_key(
            (self.root / "keys" / f"{label}.key.pem").read_bytes(), password=None
        )
        cert = load_der_x509_certificate(self.arch.get_cert(label).dump())
        ca = load_der_x509_certificate(self.arch.get_cert("root").dump())
        data = pkcs12.serialize_key_and_certificates(
            label.encode(),
            key,
            cert,
            [ca],  # type: ignore[arg-type]
            serialization.BestAvailableEncryption(passphrase),
        )
        path = self.root / f"{label}.p12"
        path.write_bytes(data)
        return path

    def pin(self, label: str) -> str:
        return TOKEN_SIGNERS[label][1]


def _write_keys(key_dir: Path) -> None:
    key_dir.mkdir(parents=True)
    for label in list(TOKEN_SIGNERS) + list(OTHER_KEYS):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (key_dir / f"{label}.key.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


def _init_tokens(root: Path, key_dir: Path, arch: Any) -> Path:
    """One SoftHSM2 token per signer with its key (``softhsm2-util --import``) and
    certificate (written over PKCS#11)."""
    token_dir = root / "tokens"
    token_dir.mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {token_dir}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    env = dict(os.environ, SOFTHSM2_CONF=str(conf))
    for label, (_name, pin) in TOKEN_SIGNERS.items():
        subprocess.run(
            [
                "softhsm2-util",
                "--init-token",
                "--free",
                "--label",
                label,
                "--pin",
                pin,
                "--so-pin",
                SO_PIN,
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                "softhsm2-util",
                "--import",
                str(key_dir / f"{label}.key.pem"),
                "--token",
                label,
                "--label",
                KEY_LABEL,
                "--id",
                "01",
                "--pin",
                pin,
            ],
            env=env,
            check=True,
            capture_output=True,
        )
    os.environ["SOFTHSM2_CONF"] = str(conf)
    import pkcs11
    from pkcs11 import Attribute, CertificateType, ObjectClass

    lib = pkcs11.lib(str(SOFTHSM_MODULE))
    lib.reinitialize()
    for label, (_name, pin) in TOKEN_SIGNERS.items():
        token = lib.get_token(token_label=label)
        cert = arch.get_cert(label)
        with token.open(rw=True, user_pin=pin) as session:
            session.create_object(
                {
                    Attribute.SUBJECT: cert.subject.dump(),
                    Attribute.ISSUER: cert.issuer.dump(),
                    Attribute.SERIAL_NUMBER: cert["tbs_certificate"]["serial_number"].dump(),
                    Attribute.CLASS: ObjectClass.CERTIFICATE,
                    Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
                    Attribute.TOKEN: True,
                    Attribute.LABEL: KEY_LABEL,
                    Attribute.ID: b"\x01",
                    Attribute.VALUE: cert.dump(),
                }
            )
    return conf


def remove_token(pki: LoopbackPki, label: str) -> None:
    """Take a signer's token away (as if the USB token were unplugged)."""
    env = dict(os.environ, SOFTHSM2_CONF=str(pki.softhsm_conf))
    subprocess.run(
        ["softhsm2-util", "--delete-token", "--token", label],
        env=env,
        check=True,
        capture_output=True,
    )
    import pkcs11

    pkcs11.lib(str(SOFTHSM_MODULE)).reinitialize()


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def start_pki(root: Path) -> Iterator[LoopbackPki]:
    """Build the PKI and the tokens under ``root``, serve the PKI on loopback; stop after."""
    from certomancer.integrations.animator import Animator, AnimatorArchStore
    from certomancer.registry import CertomancerConfig

    if not SOFTHSM_MODULE.is_file() or shutil.which("softhsm2-util") is None:
        raise RuntimeError("SoftHSM2 is not installed (Debian package softhsm2)")
    key_dir = root / "keys"
    _write_keys(key_dir)
    server: BaseWSGIServer = make_server(
        "127.0.0.1", 0, lambda e, s: [], threaded=True, request_handler=_QuietHandler
    )
    url = f"http://127.0.0.1:{server.server_port}"
    config = CertomancerConfig(_config(key_dir, url), key_search_dir=str(key_dir))
    arch = config.get_pki_arch(ARCH)  # type: ignore[arg-type]
    server.app = Animator(AnimatorArchStore(config.pki_archs), with_web_ui=False)
    (root / "certomancer.yml").write_text(yaml.safe_dump(_config(key_dir, url)))
    conf = _init_tokens(root, key_dir, arch)
    thread = threading.Thread(target=server.serve_forever, name="test-pki", daemon=True)
    thread.start()
    try:
        yield LoopbackPki(root=root, url=url, arch=arch, softhsm_conf=conf)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
