"""Reading the operator's trust roots: a bundle, a directory, or a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
from asn1crypto import pem

from server.settings import Settings
from server.signing.config import signing_policy, verify_policy
from server.signing.errors import SigningNotConfigured
from server.signing.trust import TrustRootsError, load_trust_roots
from tests.signing.pki import LoopbackPki


def test_bundle_directory_and_der(pki: LoopbackPki, tmp_path: Path) -> None:
    bundle = pki.trust_bundle("root", "outsider-root")
    assert len(load_trust_roots(str(bundle))) == 2
    directory = tmp_path / "roots"
    directory.mkdir()
    (directory / "root.crt").write_bytes(pki.cert_pem("root"))
    (directory / "outsider.der").write_bytes(pki.arch.get_cert("outsider-root").dump())
    (directory / "README.txt").write_text("not a certificate, and not read")
    names = sorted(c.subject.native["common_name"] for c in load_trust_roots(str(directory)))
    assert names == ["CA không được tin cậy", "CA thử nghiệm Diên Hồng"]
    assert load_trust_roots("") == []


def test_bad_trust_roots_are_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TrustRootsError):
        load_trust_roots(str(tmp_path / "missing.pem"))
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(pem.armor("CERTIFICATE", b"\x30\x03\x02\x01\x01"))
    with pytest.raises(TrustRootsError):
        load_trust_roots(str(garbage))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TrustRootsError):
        load_trust_roots(str(empty))
    settings = Settings(signing_trust_roots=str(garbage), signing_tsa_url="http://127.0.0.1:9")
    for build in (signing_policy, verify_policy):
        with pytest.raises(SigningNotConfigured) as refused:
            build(settings)
        assert refused.value.code == "signing_not_configured"
