"""The test PKI (CA, OCSP, CRL, TSA on loopback) and SoftHSM2 tokens, once per run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from meeting.meetings import change_state, create_meeting
from meeting.models import MeetingState
from server.auth.principal import Principal
from server.demo import DemoCity, seed_demo
from server.org.models import User
from tests.conftest import DEMO_PASSWORD
from tests.harness import RunningServer
from tests.signing.pki import KEY_LABEL, SOFTHSM_MODULE, LoopbackPki, start_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackPki]:
    if not SOFTHSM_MODULE.is_file():
        message = "SoftHSM2 (Debian package softhsm2) is needed for the signing tests"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    yield from start_pki(tmp_path_factory.mktemp("pki"))


def signing_settings(pki: LoopbackPki, **overrides: Any) -> dict[str, Any]:
    """Server settings that sign with the test PKI: personal tokens labelled by username,
    the organisation's seal on the token ``org``."""
    settings: dict[str, Any] = {
        "signing_pkcs11_module": str(SOFTHSM_MODULE),
        "signing_key_label": KEY_LABEL,
        "signing_tsa_url": pki.tsa_url,
        "signing_trust_roots": str(pki.trust_bundle("root")),
        "signing_org_token_label": "org",
        "signing_org_pin": pki.pin("org"),
        "signing_fetch_revocation": True,
    }
    settings.update(overrides)
    return settings


async def closed_meeting(server: RunningServer) -> tuple[DemoCity, int]:
    """The demo city (users ``chair`` and ``secretary``) and a meeting of theirs, closed."""
    city, _summary = await seed_demo(server.ctx, password=DEMO_PASSWORD, communes=2, delegates=3)
    async with server.ctx.read() as session:
        chair = Principal.of(await session.get(User, city.chair_id))
    meeting = await create_meeting(
        server.ctx,
        chair,
        title="Kỳ họp chuyên đề",
        starts_at=server.ctx.clock.now(),
        chair_ids=[city.chair_id],
        secretary_ids=[city.secretary_id],
        delegate_ids=city.delegate_ids,
    )
    await change_state(server.ctx, chair, meeting.id, MeetingState.IN_SESSION)
    await change_state(server.ctx, chair, meeting.id, MeetingState.CLOSED)
    return city, meeting.id
