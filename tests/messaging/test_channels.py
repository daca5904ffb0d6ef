"""Channels: unit/group/direct, idempotent posting, edit and retract history, read positions,
typing and presence (ephemeral, never logged)."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from messaging.models import Message
from server.demo import DemoCity
from server.realtime.models import EventRecord
from tests.harness import RunningServer, eventually
from tests.messaging.support import (
    audit_actions,
    count_rows,
    events_of,
    stored_state,
    token,
)


async def unit_channel(server: RunningServer, user_token: str) -> dict[str, Any]:
    async with server.http(user_token) as http:
        channels = (await http.get("/api/v1/channels")).json()["channels"]
    return next(c for c in channels if c["kind"] == "unit")


async def test_every_unit_has_a_channel_for_its_members(
    server: RunningServer, city: DemoCity
) -> None:
    # delegate001, 005 and 009 sit in the first committee.
    d1, d5 = await token(server, "delegate001"), await token(server, "delegate005")
    channel = await unit_channel(server, d1)
    assert channel["unit_id"] == city.committee_unit_ids[0]
    assert (await unit_channel(server, d5))["id"] == channel["id"]
    async with server.http(d1) as http:
        shown = (await http.get(f"/api/v1/channels/{channel['id']}")).json()
    assert shown["member_ids"] == sorted(
        [city.delegate_ids[0], city.delegate_ids[4], city.delegate_ids[8]]
    )
    async with server.http(await token(server, "ward001")) as http:
        ward_channel = await unit_channel(server, await token(server, "ward001"))
        assert ward_channel["id"] != channel["id"]
        refused = await http.get(f"/api/v1/channels/{channel['id']}")
        assert refused.status_code == 403


async def test_messages_are_idempotent_and_keep_history(
    server: RunningServer, city: DemoCity
) -> None:
    d1, d5 = await token(server, "delegate001"), await token(server, "delegate005")
    channel = await unit_channel(server, d1)
    cid = channel["id"]
    async with server.socket(d5) as watcher:
        await watcher.subscribe({f"channel:{cid}": 0})
        async with server.http(d1) as http:
            first = await http.post(
                f"/api/v1/channels/{cid}/messages",
                json={"body": "Họp lúc 14 giờ", "client_msg_id": "m-1"},
            )
            assert first.status_code == 201
            again = await http.post(
                f"/api/v1/channels/{cid}/messages",
                json={"body": "Họp lúc 14 giờ", "client_msg_id": "m-1"},
            )
            assert again.status_code == 200
            assert again.json()["id"] == first.json()["id"]
            clash = await http.post(
                f"/api/v1/channels/{cid}/messages", json={"body": "khác", "client_msg_id": "m-1"}
            )
            assert clash.status_code == 409
            assert clash.json()["error"]["code"] == "client_msg_id_reused"
        posted = await watcher.next_event("message.posted")
        assert posted["seq"] == first.json()["seq"]
        assert posted["data"]["message"]["body"] == "Họp lúc 14 giờ"
        # Messages name their author, for members who do not know each other.
        async with server.http(d1) as http:
            author_name = (await http.get("/api/v1/me")).json()["display_name"]
        assert posted["data"]["message"]["author_name"] == author_name
        assert first.json()["author_name"] == again.json()["author_name"] == author_name
    assert await count_rows(server, Message) == 1
    message_id = first.json()["id"]

    async with server.http(d5) as http:
        answer = await http.post(
            f"/api/v1/channels/{cid}/messages",
            json={"body": "Đã rõ", "client_msg_id": "r-1", "reply_to": message_id},
        )
        assert answer.status_code == 201
        assert answer.json()["reply_to"] == message_id
        not_author = await http.patch(
            f"/api/v1/channels/{cid}/messages/{message_id}", json={"body": "sửa trộm"}
        )
        assert not_author.status_code == 403
        assert not_author.json()["error"]["code"] == "not_author"
    async with server.http(d1) as http:
        edited = await http.patch(
            f"/api/v1/channels/{cid}/messages/{message_id}", json={"body": "Họp lúc 15 giờ"}
        )
        assert edited.status_code == 200
        assert edited.json()["version"] == 2
        assert edited.json()["versions"][0]["body"] == "Họp lúc 14 giờ"
        retracted = await http.delete(f"/api/v1/channels/{cid}/messages/{message_id}")
        assert retracted.status_code == 200
        assert retracted.json()["state"] == "retracted"
        assert retracted.json()["body"] is None
        twice = await http.delete(f"/api/v1/channels/{cid}/messages/{message_id}")
        assert twice.status_code == 409
        assert twice.json()["error"]["code"] == "message_retracted"
        edit_dead = await http.patch(
            f"/api/v1/channels/{cid}/messages/{message_id}", json={"body": "x"}
        )
        assert edit_dead.status_code == 409
        history = (await http.get(f"/api/v1/channels/{cid}/messages")).json()["messages"]
    assert [m["state"] for m in history] == ["retracted", "posted"]
    assert history[0]["body"] is None and history[1]["body"] == "Đã rõ"
    types = [e.type for e in await events_of(server, f"channel:{cid}")]
    assert types[-4:] == ["message.posted", "message.posted", "message.edited", "message.retracted"]
    assert len(await audit_actions(server, "message.edit")) == 1
    assert len(await audit_actions(server, "message.retract")) == 1

    async with server.http(d1) as http:
        after = (
            await http.get(
                f"/api/v1/channels/{cid}/messages", params={"after_seq": history[0]["seq"]}
            )
        ).json()
    assert [m["body"] for m in after["messages"]] == ["Đã rõ"]


async def test_a_page_of_history_is_one_statement_and_refuses_as_before(
    server: RunningServer, city: DemoCity
) -> None:
    from sqlalchemy import event

    d1, d2 = await token(server, "delegate001"), await token(server, "delegate002")
    w1 = await token(server, "ward001")
    async with server.http(d1) as http:
        group = await http.post(
            "/api/v1/channels",
            json={"kind": "group", "name": "Tổ soạn thảo", "member_ids": [city.delegate_ids[1]]},
        )
        cid = group.json()["id"]
        empty = await http.get(f"/api/v1/channels/{cid}/messages")
        assert empty.status_code == 200 and empty.json() == {"messages": []}
        for i in range(5):
            posted = await http.post(
                f"/api/v1/channels/{cid}/messages",
                json={"body": f"Đoạn {i}", "client_msg_id": f"page-{i}"},
            )
            assert posted.status_code == 201
    statements: list[str] = []
    # The connection each statement ran on: the node's background tasks read meanwhile.
    connections: list[int] = []

    def seen(conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)
        connections.append(id(conn.connection.dbapi_connection))

    engine = server.ctx.db.read_engine.sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        async with server.http(d2) as http:
            first = await http.get(f"/api/v1/channels/{cid}/messages", params={"limit": 2})
            asked = len(statements)
            newest = await http.get(
                f"/api/v1/channels/{cid}/messages", params={"before_seq": 10**9, "limit": 2}
            )
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    pages = [m["body"] for m in first.json()["messages"]]
    assert pages == ["Đoạn 0", "Đoạn 1"]
    # The channel, membership, messages and their authors' cards in one statement (the
    # node's background tasks may read other tables meanwhile).
    tables = ("FROM channels", "FROM channel_members", "FROM messages", "JOIN units")
    work = [i for i, s in enumerate(statements[:asked]) if any(t in s for t in tables)]
    assert len(work) == 1, [statements[i] for i in work]
    # No transaction: the statement before it on its connection (if any) is not a BEGIN.
    mine = connections[work[0]]
    before = [
        s for s, c in zip(statements[: work[0]], connections[: work[0]], strict=True) if c == mine
    ]
    assert before[-1:] != ["BEGIN"], before
    last_two = newest.json()["messages"]
    assert [m["body"] for m in last_two] == ["Đoạn 3", "Đoạn 4"]
    assert last_two[0]["sender"]["display_name"] and last_two[0]["sender"]["unit_name"]
    async with server.http(d2) as http:
        before = await http.get(
            f"/api/v1/channels/{cid}/messages", params={"before_seq": last_two[0]["seq"]}
        )
        assert [m["body"] for m in before.json()["messages"]] == [f"Đoạn {i}" for i in range(3)]
        after = await http.get(
            f"/api/v1/channels/{cid}/messages", params={"after_seq": last_two[1]["seq"]}
        )
        assert after.json() == {"messages": []}
    async with server.http(w1) as http:
        outsider = await http.get(f"/api/v1/channels/{cid}/messages")
        assert outsider.status_code == 403
        assert outsider.json()["error"]["code"] == "not_a_member"
        nowhere = await http.get("/api/v1/channels/987654/messages")
        assert nowhere.status_code == 404
        assert nowhere.json()["error"]["code"] == "channel_not_found"


async def test_read_positions_and_unread_counts(server: RunningServer, city: DemoCity) -> None:
    d1, d5 = await token(server, "delegate001"), await token(server, "delegate005")
    cid = (await unit_channel(server, d1))["id"]
    seqs = []
    async with server.http(d1) as http:
        for i in range(3):
            posted = await http.post(
                f"/api/v1/channels/{cid}/messages",
                json={"body": f"tin {i}", "client_msg_id": f"c{i}"},
            )
            seqs.append(posted.json()["seq"])
    async with server.http(d5) as http:
        mine = next(
            c for c in (await http.get("/api/v1/channels")).json()["channels"] if c["id"] == cid
        )
        assert mine["unread"] == 3 and mine["read_seq"] == 0
        moved = await http.post(f"/api/v1/channels/{cid}/read", json={"seq": seqs[1]})
        assert moved.json() == {"channel_id": cid, "read_seq": seqs[1], "unread": 1}
        back = await http.post(f"/api/v1/channels/{cid}/read", json={"seq": 0})
        assert back.json()["read_seq"] == seqs[1]  # never moves back
        bad = await http.post(f"/api/v1/channels/{cid}/read", json={"seq": -1})
        assert bad.status_code == 400
    async with server.http(d1) as http:
        own = next(
            c for c in (await http.get("/api/v1/channels")).json()["channels"] if c["id"] == cid
        )
        assert own["unread"] == 0  # one's own messages are read


async def test_direct_and_group_channels(server: RunningServer, city: DemoCity) -> None:
    w1, w2, w3 = [await token(server, f"ward00{i}") for i in (1, 2, 3)]
    u1, u2, u3 = city.ward_user_ids[:3]
    async with server.http(w1) as http:
        direct = await http.post("/api/v1/channels", json={"kind": "direct", "member_ids": [u2]})
        assert direct.status_code == 201
        again = await http.post("/api/v1/channels", json={"kind": "direct", "member_ids": [u2]})
        assert again.status_code == 200 and again.json()["id"] == direct.json()["id"]
        group = await http.post(
            "/api/v1/channels", json={"kind": "group", "name": "Ba phường", "member_ids": [u2, u3]}
        )
        assert group.status_code == 201
    async with server.http(w2) as http:
        reverse = await http.post("/api/v1/channels", json={"kind": "direct", "member_ids": [u1]})
        assert reverse.json()["id"] == direct.json()["id"]
        posted = await http.post(
            f"/api/v1/channels/{direct.json()['id']}/messages",
            json={"body": "chào", "client_msg_id": "d1"},
        )
        assert posted.status_code == 201
        in_group = await http.post(
            f"/api/v1/channels/{group.json()['id']}/messages",
            json={"body": "Phường 2 báo cáo", "client_msg_id": "g1"},
        )
        assert in_group.status_code == 201
        w2_name = (await http.get("/api/v1/me")).json()["display_name"]
    async with server.http(w3) as http:
        listed = {c["id"] for c in (await http.get("/api/v1/channels")).json()["channels"]}
        assert group.json()["id"] in listed and direct.json()["id"] not in listed
        # A member of another unit reads who wrote, not only an id.
        history = (await http.get(f"/api/v1/channels/{group.json()['id']}/messages")).json()
        assert [(m["author_id"], m["author_name"]) for m in history["messages"]] == [(u2, w2_name)]
        refused = await http.get(f"/api/v1/channels/{direct.json()['id']}/messages")
        assert refused.status_code == 403
        assert "chào" not in refused.text

    before = await stored_state(server)
    async with server.http(w1) as http:
        for body, code in [
            ({"kind": "direct", "member_ids": [u2, u3]}, "invalid_members"),
            ({"kind": "direct", "member_ids": [u1]}, "invalid_members"),
            ({"kind": "group", "member_ids": [u2]}, "name_required"),
            ({"kind": "group", "name": "x", "member_ids": [99999]}, "unknown_users"),
        ]:
            response = await http.post("/api/v1/channels", json=body)
            assert response.status_code == 422, body
            assert response.json()["error"]["code"] == code
        kind = await http.post("/api/v1/channels", json={"kind": "unit", "member_ids": []})
        assert kind.status_code == 400
        cid = direct.json()["id"]
        for body, status, code in [
            ({"body": "x" * 20_000, "client_msg_id": "big"}, 413, "body_too_large"),
            ({"body": "   ", "client_msg_id": "blank"}, 422, "empty_message"),
            ({"body": "x", "client_msg_id": ""}, 400, "invalid_request"),
            ({"body": "x", "client_msg_id": "r", "reply_to": 99999}, 422, "unknown_reply_to"),
            (
                {"body": "x", "client_msg_id": "a", "attachment_ids": [5555]},
                422,
                "unknown_attachment",
            ),
        ]:
            response = await http.post(f"/api/v1/channels/{cid}/messages", json=body)
            assert response.status_code == status, body
            assert response.json()["error"]["code"] == code
        missing = await http.post(
            "/api/v1/channels/99999/messages", json={"body": "x", "client_msg_id": "z"}
        )
        assert missing.status_code == 404
    assert await stored_state(server) == before


async def test_typing_and_presence_are_signals_never_logged(
    server: RunningServer, city: DemoCity
) -> None:
    d1, d5 = await token(server, "delegate001"), await token(server, "delegate005")
    unit_id = city.committee_unit_ids[0]
    cid = (await unit_channel(server, d1))["id"]
    events_before = await count_rows(server, EventRecord)
    async with server.socket(d5) as watcher:
        await watcher.subscribe({f"channel:{cid}": 0})
        async with server.http(d5) as http:
            presence = (await http.get(f"/api/v1/units/{unit_id}/presence")).json()
        assert presence["total"] == 3 and presence["online"] == 1
        async with server.socket(d1) as typist:
            seen = await _signal(watcher, "presence.changed")
            assert seen["data"] == {
                "user_id": city.delegate_ids[0],
                "unit_id": unit_id,
                "state": "online",
            }
            await typist.subscribe({f"channel:{cid}": 0})
            await typist.send(
                op="signal", topic=f"channel:{cid}", type="typing", data={"typing": True}
            )
            typing = await _signal(watcher, "typing")
            assert typing["data"]["user_id"] == city.delegate_ids[0]
            assert typing["data"]["typing"] is True
            await typist.send(
                op="signal",
                topic=f"user:{city.delegate_ids[0]}",
                type="presence",
                data={"state": "away"},
            )
            away = await _signal(watcher, "presence.changed")
            assert away["data"]["state"] == "away"
            async with server.http(d5) as http:
                presence = (await http.get(f"/api/v1/units/{unit_id}/presence")).json()
            assert (presence["online"], presence["away"], presence["total"]) == (1, 1, 3)
        offline = await _signal(watcher, "presence.changed")
        assert offline["data"]["state"] == "offline"
    assert await count_rows(server, EventRecord) == events_before
    async with server.http(await token(server, "ward001")) as http:
        refused = await http.get(f"/api/v1/units/{unit_id}/presence")
        assert refused.status_code == 403


async def _signal(client: Any, type: str) -> dict[str, Any]:
    while True:
        frame: dict[str, Any] = await client.recv()
        if frame.get("op") == "signal" and frame.get("type") == type:
            return frame


async def test_unit_channel_created_for_a_new_unit(server: RunningServer, city: DemoCity) -> None:
    admin = await token(server, "admin")
    async with server.http(admin) as http:
        unit = (
            await http.post(
                "/api/v1/units",
                json={"name": "Phường Mới", "kind": "ward", "parent_id": city.root_unit_id},
            )
        ).json()
        user = await http.post(
            "/api/v1/users",
            json={
                "username": "wardnew",
                "display_name": "Cán bộ mới",
                "unit_id": unit["id"],
                "password": "demo-password-1",
            },
        )
        assert user.status_code == 201
    newcomer = await server.login("wardnew", "demo-password-1")
    channel = await unit_channel(server, newcomer)
    assert channel["unit_id"] == unit["id"]

    async def one_channel() -> bool:
        return (
            await count_rows(server, EventRecord, EventRecord.topic == f"channel:{channel['id']}")
            == 1
        )

    await eventually(one_channel)


async def test_presence_is_the_best_state_over_nodes(make_server: Any) -> None:
    from tests.server.support import small_city

    node_a = await make_server()
    if not node_a.settings.redis_url:
        pytest.skip("nodes share presence through Redis: the PostgreSQL + Redis backend")
    node_b = await make_server()
    city = await small_city(node_a)
    unit_id, d1 = city.committee_unit_ids[0], city.delegate_ids[0]
    watcher_token = await token(node_a, "delegate005")
    d1_token = await token(node_a, "delegate001")
    async with node_a.socket(watcher_token) as watcher, contextlib.AsyncExitStack() as stack:

        async def state_of_d1() -> str:
            while True:
                seen = await _signal(watcher, "presence.changed")
                if seen["data"]["user_id"] == d1:
                    return str(seen["data"]["state"])

        on_a = contextlib.AsyncExitStack()
        await on_a.enter_async_context(node_a.socket(d1_token))
        assert await state_of_d1() == "online"
        async with node_b.socket(d1_token):
            assert await state_of_d1() == "online"
        # Gone from node B, still on node A: online.
        assert await state_of_d1() == "online"
        await stack.enter_async_context(node_b.socket(d1_token))
        assert await state_of_d1() == "online"
        # Gone from node A (the watcher's node), still on node B: online, not offline.
        await on_a.aclose()
        assert await state_of_d1() == "online"
        async with node_a.http(watcher_token) as http:
            presence = (await http.get(f"/api/v1/units/{unit_id}/presence")).json()
        assert presence["online"] == 2
        await stack.aclose()
        assert await state_of_d1() == "offline"
