"""Signed minutes: secretary, chair, then the organisation; then they are the record."""

from __future__ import annotations

import asyncio
import logging

import pytest
from sqlalchemy import select

from server.audit import AuditRecord
from server.signing.verify import VerifyPolicy, verify_pdf
from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.signing.conftest import closed_meeting, signing_settings
from tests.signing.pki import LoopbackPki


async def signing_audit(server) -> list[AuditRecord]:  # type: ignore[no-untyped-def]
    async with server.ctx.read() as session:
        return list(
            (
                await session.execute(
                    select(AuditRecord)
                    .where(AuditRecord.action == "document.signed")
                    .order_by(AuditRecord.seq)
                )
            ).scalars()
        )


async def test_minutes_signed_in_turn(
    make_server: MakeServer, pki: LoopbackPki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    policy = VerifyPolicy((pki.arch.get_cert("root"),), fetch=False)
    server = await make_server(**signing_settings(pki))
    _city, meeting_id = await closed_meeting(server)
    base = f"/api/v1/meetings/{meeting_id}"
    secretary = await server.login("secretary", DEMO_PASSWORD)
    chair = await server.login("chair", DEMO_PASSWORD)

    async with server.http(chair) as client:
        unsigned = (await client.get(f"{base}/minutes.pdf")).content
        # The chair does not sign first.
        refused = await client.post(f"{base}/minutes/signatures", json={"pin": "2222"})
        assert refused.status_code == 403, refused.text
    async with server.http(secretary) as client:
        wrong = await client.post(f"{base}/minutes/signatures", json={"pin": "9876"})
        assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "wrong_pin"
        no_pin = await client.post(f"{base}/minutes/signatures", json={})
        assert no_pin.status_code == 400 and no_pin.json()["error"]["code"] == "pin_required"
        status = (await client.get(f"{base}/minutes/signatures")).json()
        assert status["state"] == "unsigned" and status["signatures"] == []
        assert await signing_audit(server) == []

        signed = await client.post(f"{base}/minutes/signatures", json={"pin": pki.pin("secretary")})
        assert signed.status_code == 201, signed.text
        assert signed.json()["next_step"] == "chair"
        first = (await client.get(f"{base}/minutes.pdf")).content
        assert len(await asyncio.to_thread(verify_pdf, first, policy)) == 1
        again = await client.post(f"{base}/minutes/signatures", json={"pin": pki.pin("secretary")})
        assert again.status_code == 403  # the next step is the chair's
    async with server.http(chair) as client:
        done = await client.post(f"{base}/minutes/signatures", json={"pin": pki.pin("chair")})
        assert done.status_code == 201, done.text
        body = done.json()
        assert body["state"] == "signed" and body["next_step"] is None
        assert [s["step"] for s in body["signatures"]] == ["secretary", "chair", "organisation"]
        record = (await client.get(f"{base}/minutes.pdf")).content
        assert record == (await client.get(f"{base}/minutes.pdf")).content  # stored, fixed
        assert record.startswith(first) and record != unsigned
        finished = await client.post(f"{base}/minutes/signatures", json={"pin": "2222"})
        assert finished.status_code == 409
        assert finished.json()["error"]["code"] == "minutes_signed"

    summaries = await asyncio.to_thread(verify_pdf, record, policy)
    assert [s["signer_common_name"] for s in summaries] == [
        "Nguyễn Thị Thư Ký",
        "Trần Văn Chủ Tọa",
        "HĐND Thành phố",
    ]
    assert all(s["valid"] and s["timestamp_valid"] for s in summaries)
    audit = await signing_audit(server)
    assert [r.details["step"] for r in audit] == ["secretary", "chair", "organisation"]
    assert [r.details["certificate_sha256"] for r in audit] == [
        s["certificate_sha256"] for s in summaries
    ]
    for pin in (pki.pin("secretary"), pki.pin("chair"), pki.pin("org"), "9876"):
        assert f'"{pin}"' not in caplog.text and f"'{pin}'" not in caplog.text


async def test_minutes_of_an_open_meeting_are_not_signed(
    make_server: MakeServer, pki: LoopbackPki
) -> None:
    from meeting.meetings import change_state, create_meeting
    from meeting.models import MeetingState
    from server.auth.principal import Principal
    from server.demo import seed_demo
    from server.org.models import User

    server = await make_server(**signing_settings(pki))
    city, _ = await seed_demo(server.ctx, password=DEMO_PASSWORD, communes=1, delegates=2)
    async with server.ctx.read() as session:
        chair = Principal.of(await session.get(User, city.chair_id))
    meeting = await create_meeting(
        server.ctx,
        chair,
        title="Kỳ họp",
        starts_at=server.ctx.clock.now(),
        chair_ids=[city.chair_id],
        secretary_ids=[city.secretary_id],
        delegate_ids=city.delegate_ids,
    )
    await change_state(server.ctx, chair, meeting.id, MeetingState.IN_SESSION)
    secretary = await server.login("secretary", DEMO_PASSWORD)
    async with server.http(secretary) as client:
        response = await client.post(
            f"/api/v1/meetings/{meeting.id}/minutes/signatures", json={"pin": pki.pin("secretary")}
        )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "meeting_not_closed"
    assert await signing_audit(server) == []


async def test_an_absent_seal_leaves_the_minutes_waiting(
    make_server: MakeServer, pki: LoopbackPki
) -> None:
    server = await make_server(**signing_settings(pki, signing_org_token_label="no-such-seal"))
    _city, meeting_id = await closed_meeting(server)
    base = f"/api/v1/meetings/{meeting_id}"
    secretary = await server.login("secretary", DEMO_PASSWORD)
    chair = await server.login("chair", DEMO_PASSWORD)
    async with server.http(secretary) as client:
        first = await client.post(f"{base}/minutes/signatures", json={"pin": pki.pin("secretary")})
        assert first.status_code == 201, first.text
    async with server.http(chair) as client:
        second = await client.post(f"{base}/minutes/signatures", json={"pin": pki.pin("chair")})
        assert second.status_code == 201, second.text
        assert second.json()["state"] == "signing"
        assert second.json()["next_step"] == "organisation"
        stored = (await client.get(f"{base}/minutes.pdf")).content
        retry = await client.post(f"{base}/minutes/signatures", json={})
        assert retry.status_code == 409 and retry.json()["error"]["code"] == "token_absent"
        assert (await client.get(f"{base}/minutes.pdf")).content == stored
        status = (await client.get(f"{base}/minutes/signatures")).json()
    assert [s["step"] for s in status["signatures"]] == ["secretary", "chair"]
    assert [r.details["step"] for r in await signing_audit(server)] == ["secretary", "chair"]
