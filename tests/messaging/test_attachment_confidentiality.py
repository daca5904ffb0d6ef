"""An attachment carries the confidentiality of the directives that attach it: it can be
attached only where every reader is cleared for it, and a refusal changes nothing."""

from __future__ import annotations

from typing import Any

from server.demo import DemoCity
from tests.harness import RunningServer
from tests.messaging.support import directive_body, issue, stored_state, token
from tests.messaging.test_search_and_files import upload


async def _refused(response: Any, file_id: int) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "attachment_too_confidential"
    assert error["details"] == {"file_id": file_id, "confidentiality": "confidential"}


async def test_a_confidential_attachment_goes_only_to_cleared_readers(
    server: RunningServer, city: DemoCity
) -> None:
    standing = await token(server, "standing")
    committee = city.committee_unit_ids[0]
    # delegate001 and delegate004 sit in the first committee; delegates are cleared for
    # "confidential", ward staff for nothing.
    cleared, cleared_peer = await token(server, "delegate001"), city.delegate_ids[3]
    secret_file = await upload(server, standing, "Phương án nhân sự (mật)")
    await issue(
        server,
        standing,
        directive_body([committee], confidentiality="confidential", attachment_ids=[secret_file]),
    )
    open_directive = await issue(server, standing, directive_body([committee]))
    before = await stored_state(server)
    async with server.http(cleared) as http:
        assert (await http.get(f"/api/v1/files/{secret_file}")).status_code == 200
        uncleared_dm = (
            await http.post(
                "/api/v1/channels", json={"kind": "direct", "member_ids": [city.ward_user_ids[0]]}
            )
        ).json()
        cleared_dm = (
            await http.post(
                "/api/v1/channels", json={"kind": "direct", "member_ids": [cleared_peer]}
            )
        ).json()
        before = await stored_state(server)
        # Into a direct message with an uncleared user: refused, nothing stored.
        await _refused(
            await http.post(
                f"/api/v1/channels/{uncleared_dm['id']}/messages",
                json={"body": "gửi anh", "client_msg_id": "leak", "attachment_ids": [secret_file]},
            ),
            secret_file,
        )
        # Into the thread of a directive of a lower level: refused too.
        await _refused(
            await http.post(
                f"/api/v1/directives/{open_directive['id']}/replies",
                json={"body": "Kèm tài liệu", "attachment_ids": [secret_file]},
            ),
            secret_file,
        )
        assert await stored_state(server) == before
        # Between two cleared readers it goes.
        sent = await http.post(
            f"/api/v1/channels/{cleared_dm['id']}/messages",
            json={"body": "tài liệu", "client_msg_id": "ok", "attachment_ids": [secret_file]},
        )
        assert sent.status_code == 201, sent.text
    # The sender cannot hand it on in a directive of a lower level either.
    async with server.http(standing) as http:
        await _refused(
            await http.post(
                "/api/v1/directives",
                json=directive_body(city.commune_unit_ids[:1], attachment_ids=[secret_file]),
            ),
            secret_file,
        )
    async with server.http(await token(server, "ward001")) as http:
        assert (await http.get(f"/api/v1/files/{secret_file}")).status_code == 404
