"""Who sent it: instructions, replies and messages carry the author's card (name, title,
unit) in the API and in their events, for a reader who never talked to the author."""

from __future__ import annotations

from typing import Any

from server.demo import DemoCity
from tests.harness import RunningServer
from tests.messaging.support import directive_body, issue, token

STANDING_CARD_KEYS = {"id", "display_name", "title", "unit_id", "unit_name"}


def assert_standing(card: dict[str, Any], city: DemoCity) -> None:
    assert set(card) == STANDING_CARD_KEYS  # nothing more: no username, roles or clearance
    assert card == {
        "id": city.standing_id,
        "display_name": "Phùng Thị Hồng",
        "title": "standing",
        "unit_id": city.root_unit_id,
        "unit_name": card["unit_name"],
    }
    assert "Thường trực" in card["unit_name"]


async def test_directive_names_its_sender_to_a_stranger(
    server: RunningServer, city: DemoCity
) -> None:
    standing = await token(server, "standing")
    ward = await token(server, "ward001")
    async with server.socket(ward) as client:
        issued = await issue(server, standing, directive_body([city.commune_unit_ids[0]]))
        event = await client.next_event("directive.issued")
    directive_id = issued["id"]
    assert_standing(event["data"]["directive"]["sender"], city)
    assert event["data"]["directive"]["sender_id"] == city.standing_id
    async with server.http(ward) as http:
        inbox = (await http.get("/api/v1/directives?box=inbox")).json()["directives"]
        shown = (await http.get(f"/api/v1/directives/{directive_id}")).json()
    assert_standing(inbox[0]["sender"], city)
    assert_standing(shown["sender"], city)
    async with server.http(standing) as http:
        sent = (await http.get("/api/v1/directives?box=sent")).json()["directives"]
    assert_standing(sent[0]["sender"], city)


async def test_replies_and_messages_name_their_author(
    server: RunningServer, city: DemoCity
) -> None:
    standing = await token(server, "standing")
    ward = await token(server, "ward001")
    issued = await issue(server, standing, directive_body([city.commune_unit_ids[0]]))
    async with server.socket(standing) as client:
        async with server.http(ward) as http:
            posted = await http.post(
                f"/api/v1/directives/{issued['id']}/replies", json={"body": "Đã triển khai sơ tán."}
            )
            assert posted.status_code == 201, posted.text
        event = await client.next_event("directive.reply")
    ward_card = {
        "id": city.ward_user_ids[0],
        "display_name": "Cán bộ Phường 001",
        "title": "staff",
        "unit_id": city.commune_unit_ids[0],
        "unit_name": "Phường 001",
    }
    assert posted.json()["sender"] == ward_card
    assert event["data"]["reply"]["sender"] == ward_card
    async with server.http(standing) as http:
        thread = (await http.get(f"/api/v1/directives/{issued['id']}/replies")).json()
    assert thread["replies"][0]["sender"] == ward_card

    # A direct message from the standing committee to a ward it never wrote to.
    async with server.http(standing) as http:
        channel = (
            await http.post(
                "/api/v1/channels", json={"kind": "direct", "member_ids": [city.ward_user_ids[1]]}
            )
        ).json()
    other = await token(server, "ward002")
    async with server.socket(other) as client:
        await client.send(op="subscribe", topics={f"channel:{channel['id']}": 0})
        async with server.http(standing) as http:
            message = await http.post(
                f"/api/v1/channels/{channel['id']}/messages",
                json={"body": "Chào đồng chí", "client_msg_id": "m1"},
            )
            assert message.status_code == 201, message.text
        event = await client.next_event("message.posted")
    assert_standing(message.json()["sender"], city)
    assert_standing(event["data"]["message"]["sender"], city)
    async with server.http(other) as http:
        history = (await http.get(f"/api/v1/channels/{channel['id']}/messages")).json()
    assert_standing(history["messages"][0]["sender"], city)
