"""The test PKI (CA, OCSP, CRL, TSA on loopback) and SoftHSM2 tokens, once per run."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.signing.pki import SOFTHSM_MODULE, LoopbackPki, start_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackPki]:
    if not SOFTHSM_MODULE.is_file():
        message = "SoftHSM2 (Debian package softhsm2) is needed for the signing tests"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    yield from start_pki(tmp_path_factory.mktemp("pki"))
