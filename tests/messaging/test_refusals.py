"""Permission refusals (no content leaked) and bad inputs (clear code, nothing stored/sent)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from server.demo import DemoCity
from tests.harness import RunningServer
from tests.messaging.support import (
    audit_actions,
    directive_body,
    issue,
    stored_state,
    token,
)

SECRET_TITLE = "Kế hoạch mật về sơ tán"
SECRET_BODY = "Nội dung tuyệt đối không được lộ ra ngoài"


async def test_ward_cannot_read_another_wards_reply(server: RunningServer, city: DemoCity) -> None:
    standing = await token(server, "standing")
    issued = await issue(server, standing, directive_body(city.commune_unit_ids[:2]))
    directive_id = issued["id"]
    w1, w2 = await token(server, "ward001"), await token(server, "ward002")
    async with server.http(w1) as http:
        posted = await http.post(
            f"/api/v1/directives/{directive_id}/replies",
            json={"body": "Phường 001 xin ý kiến chỉ đạo riêng"},
        )
        assert posted.status_code == 201, posted.text
        own = (await http.get(f"/api/v1/directives/{directive_id}/replies")).json()
        assert [r["body"] for r in own["replies"]] == ["Phường 001 xin ý kiến chỉ đạo riêng"]
    async with server.http(w2) as http:
        theirs = await http.get(
            f"/api/v1/directives/{directive_id}/replies",
            params={"unit_id": city.commune_unit_ids[0]},
        )
        assert theirs.status_code == 403
        assert theirs.json()["error"]["code"] == "not_your_thread"
        assert "xin ý kiến" not in theirs.text
        listing = (await http.get(f"/api/v1/directives/{directive_id}/replies")).json()
        assert listing["replies"] == []
        wrong = await http.post(
            f"/api/v1/directives/{directive_id}/replies",
            json={"body": "x", "unit_id": city.commune_unit_ids[0]},
        )
        assert wrong.status_code == 403
    async with server.http(w1) as http:
        ward_name = (await http.get("/api/v1/me")).json()["display_name"]
    async with server.http(standing) as http:
        everything = (await http.get(f"/api/v1/directives/{directive_id}/replies")).json()
        assert len(everything["replies"]) == 1
        # The sender side reads who in the ward wrote, not only an id.
        assert everything["replies"][0]["author_name"] == ward_name
        answer = await http.post(
            f"/api/v1/directives/{directive_id}/replies",
            json={"body": "Đồng ý", "unit_id": city.commune_unit_ids[0]},
        )
        assert answer.status_code == 201
    # The other ward's inbox topic never carried the thread.
    async with server.socket(w2) as client:
        frames = await client.subscribe({f"user:{city.ward_user_ids[1]}": 0})
    assert all(f.get("type") != "directive.reply" for f in frames)
    assert len(await audit_actions(server, "directive.reply")) == 2


async def test_acknowledging_for_someone_else_is_refused(
    server: RunningServer, city: DemoCity
) -> None:
    standing = await token(server, "standing")
    issued = await issue(server, standing, directive_body(city.commune_unit_ids[:2]))
    directive_id = issued["id"]
    async with server.http(await token(server, "ward001")) as http:
        response = await http.post(
            f"/api/v1/directives/{directive_id}/ack", json={"user_id": city.ward_user_ids[1]}
        )
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "not_your_receipt"
    async with server.http(await token(server, "ward003")) as http:  # not a recipient
        # Answered as for a directive that does not exist: no existence oracle.
        response = await http.post(f"/api/v1/directives/{directive_id}/ack", json={})
        missing = await http.post("/api/v1/directives/999999/ack", json={})
        assert response.status_code == missing.status_code == 404
        assert response.json()["error"]["code"] == "directive_not_found"
        assert response.json()["error"]["message"].replace(
            str(directive_id), "N"
        ) == missing.json()["error"]["message"].replace("999999", "N")
        shown = await http.get(f"/api/v1/directives/{directive_id}")
        assert shown.status_code == 404
        assert "sơ tán" not in shown.text
        for path in ("", "/read", "/replies"):
            method = http.get if path != "/read" else http.post
            assert (await method(f"/api/v1/directives/{directive_id}{path}")).status_code == 404
    async with server.http(standing) as http:
        report = (await http.get(f"/api/v1/directives/{directive_id}/receipts")).json()
    assert report["summary"]["acknowledged"] == 0
    assert await audit_actions(server, "directive.ack") == []
    async with server.http(await token(server, "ward001")) as http:
        receipts = await http.get(f"/api/v1/directives/{directive_id}/receipts")
        assert receipts.status_code == 403
        assert receipts.json()["error"]["code"] == "not_sender"


async def test_directive_above_clearance_reaches_nobody_below(
    server: RunningServer, city: DemoCity
) -> None:
    standing = await token(server, "standing")
    body = directive_body(
        [city.root_unit_id],
        title=SECRET_TITLE,
        body=SECRET_BODY,
        confidentiality="confidential",
        targets={"unit_ids": [city.root_unit_id], "include_descendants": True},
    )
    issued = await issue(server, standing, body)
    left_out = {entry["user_id"] for entry in issued["left_out"]}
    # Ward staff and the administrator have no clearance; chair, secretary and the
    # delegates are cleared.
    assert left_out == {*city.ward_user_ids, city.admin_id}
    assert issued["recipient_count"] == 2 + len(city.delegate_ids)
    ward = await token(server, "ward001")
    async with server.http(ward) as http:
        shown = await http.get(f"/api/v1/directives/{issued['id']}")
        assert shown.status_code == 403
        assert shown.json()["error"]["code"] == "insufficient_clearance"
        assert SECRET_BODY not in shown.text and SECRET_TITLE not in shown.text
        inbox = (await http.get("/api/v1/directives", params={"box": "inbox"})).json()
        assert inbox["directives"] == []
        found = (await http.get("/api/v1/search", params={"q": "tuyet doi"})).json()
        assert found["results"] == []
    async with server.socket(ward) as client:
        frames = await client.subscribe({f"user:{city.ward_user_ids[0]}": 0})
    assert SECRET_TITLE not in str(frames)
    async with server.http(await token(server, "delegate001")) as http:
        shown = await http.get(f"/api/v1/directives/{issued['id']}")
        assert shown.status_code == 200
        assert shown.json()["body"] == SECRET_BODY


async def test_issuing_without_the_standing_role_is_refused(
    server: RunningServer, city: DemoCity
) -> None:
    before = await stored_state(server)
    for username in ("chair", "ward001", "admin"):
        async with server.http(await token(server, username)) as http:
            response = await http.post(
                "/api/v1/directives", json=directive_body(city.commune_unit_ids)
            )
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "not_standing"
    assert await stored_state(server) == before
    refusals = await audit_actions(server, "access.refused")
    assert len(refusals) == 3


async def test_posting_to_a_channel_one_is_not_in_is_refused(
    server: RunningServer, city: DemoCity
) -> None:
    w1, w2 = await token(server, "ward001"), await token(server, "ward002")
    async with server.http(w1) as http:
        channels = (await http.get("/api/v1/channels")).json()["channels"]
    unit_channel = next(c for c in channels if c["kind"] == "unit")
    before = await stored_state(server)
    async with server.http(w2) as http:
        response = await http.post(
            f"/api/v1/channels/{unit_channel['id']}/messages",
            json={"body": "chen vao", "client_msg_id": "x1"},
        )
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "not_a_member"
        history = await http.get(f"/api/v1/channels/{unit_channel['id']}/messages")
        assert history.status_code == 403
    assert await stored_state(server) == before
    async with server.socket(w2) as client:
        frames = await client.subscribe({f"channel:{unit_channel['id']}": 0})
    assert frames[-1]["op"] == "error" and frames[-1]["code"] == "forbidden"


BAD_INPUTS: list[tuple[str, dict[str, Any], int, str]] = [
    (
        "unknown unit",
        {"targets": {"unit_ids": [99999], "include_descendants": False}},
        422,
        "unknown_units",
    ),
    (
        "empty targets",
        {"targets": {"unit_ids": [], "include_descendants": True}},
        422,
        "empty_targets",
    ),
    ("unknown urgency", {"urgency": "whenever"}, 400, "invalid_request"),
    ("body over the limit", {"body": "ả" * 70_000}, 413, "body_too_large"),
    ("unknown attachment", {"attachment_ids": [424242]}, 422, "unknown_attachment"),
    ("due in the past", {"due_at": "PAST"}, 422, "due_in_past"),
    ("due without offset", {"due_at": "2030-01-01T00:00:00"}, 400, "invalid_request"),
    ("missing title", {"title": ""}, 400, "invalid_request"),
    ("unknown field", {"priority": 1}, 400, "invalid_request"),
    ("unknown confidentiality", {"confidentiality": "hush"}, 400, "invalid_request"),
    ("level above sender", {"confidentiality": "top_secret"}, 403, "insufficient_clearance"),
]


@pytest.mark.parametrize(
    ("label", "change", "status", "code"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS]
)
async def test_bad_directive_inputs_store_and_send_nothing(
    server: RunningServer,
    city: DemoCity,
    label: str,
    change: dict[str, Any],
    status: int,
    code: str,
) -> None:
    standing = await token(server, "standing")
    body = directive_body(city.commune_unit_ids)
    if change.get("due_at") == "PAST":
        change = {"due_at": (server.ctx.clock.now() - timedelta(minutes=1)).isoformat()}
    body.update(change)
    before = await stored_state(server)
    async with server.http(standing) as http:
        response = await http.post("/api/v1/directives", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert await stored_state(server) == before
    assert await audit_actions(server, "directive.issue") == []


async def test_unknown_directive_is_404(server: RunningServer, city: DemoCity) -> None:
    async with server.http(await token(server, "ward001")) as http:
        for path in ("/api/v1/directives/999", "/api/v1/directives/999/replies"):
            response = await http.get(path)
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "directive_not_found"
        bad = await http.get("/api/v1/directives", params={"box": "spam"})
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == "invalid_box"
