"""Access ends on open sockets when it ends, on every node.

Two nodes share one database (and Redis on PostgreSQL; on SQLite the log sweep carries
events between them): the change is made through node A, the socket is on node B. When a
participant is removed, a role is taken away or a user moves to another unit, node B
drops the subscriptions no longer allowed with ``unsubscribed`` and its reason, and the
socket gets no event of those topics after that; subscriptions still allowed go on.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from meeting.models import Meeting
from messaging.models import Channel
from server.demo import DemoCity
from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.harness import RunningServer, WsClient
from tests.server.support import small_city


async def _token(server: RunningServer, username: str) -> str:
    return await server.login(username, DEMO_PASSWORD)


async def _until(client: WsClient, op: str, topic: str, timeout: float = 10.0) -> dict[str, Any]:
    """The first ``op`` frame of ``topic``, skipping frames before it."""
    while True:
        message = await client.recv(timeout)
        if message.get("op") == op and message.get("topic") == topic:
            return message


async def _frames_until_pong(client: WsClient) -> list[dict[str, Any]]:
    await client.send(op="ping")
    frames: list[dict[str, Any]] = []
    while True:
        message = await client.recv()
        if message.get("op") == "pong":
            return frames
        frames.append(message)


async def _nodes(make_server: MakeServer) -> tuple[RunningServer, RunningServer, DemoCity]:
    node_a = await make_server()
    city = await small_city(node_a)
    node_b = await make_server()
    return node_a, node_b, city


async def test_a_removed_participant_stops_getting_meeting_events(make_server: MakeServer) -> None:
    node_a, node_b, city = await _nodes(make_server)
    async with node_a.ctx.read() as session:
        meeting_id = (await session.execute(select(Meeting.id))).scalars().first()
    topic = f"meeting:{meeting_id}"
    chair = await _token(node_a, "chair")
    async with (
        node_b.socket(await _token(node_b, "delegate001")) as removed,
        node_b.socket(await _token(node_b, "delegate002")) as staying,
    ):
        for client in (removed, staying):
            frames = await client.subscribe({topic: 0})
            assert frames[-1]["op"] == "subscribed", frames
        async with node_a.http(chair) as http:
            gone = await http.delete(
                f"/api/v1/meetings/{meeting_id}/participants/{city.delegate_ids[0]}"
            )
            assert gone.status_code == 204, gone.text
            unsubscribed = await _until(removed, "unsubscribed", topic)
            assert unsubscribed["reason"] == "participation_changed"
            added = await http.post(
                f"/api/v1/meetings/{meeting_id}/agenda",
                json={"title": "Mục mới", "document_ids": []},
            )
            assert added.status_code in (200, 201), added.text
        # Node B fans out to both sockets at once: once the one still allowed has it...
        await staying.next_event("agenda.changed", timeout=10)
        # ...the removed one would have had it before its pong.
        later = await _frames_until_pong(removed)
        assert [f for f in later if f.get("topic") == topic] == []


async def test_a_user_who_lost_the_standing_role_stops_getting_unit_events(
    make_server: MakeServer,
) -> None:
    node_a, node_b, city = await _nodes(make_server)
    ward_topic = f"unit:{city.commune_unit_ids[0]}"
    admin = await _token(node_a, "admin")
    async with node_b.socket(await _token(node_b, "standing")) as standing:
        frames = await standing.subscribe({ward_topic: 0})
        assert frames[-1]["op"] == "subscribed", frames
        async with node_a.http(admin) as http:
            changed = await http.patch(
                f"/api/v1/users/{city.standing_id}", json={"roles": ["staff"]}
            )
            assert changed.status_code == 200, changed.text
        unsubscribed = await _until(standing, "unsubscribed", ward_topic)
        assert unsubscribed["reason"] == "role_changed"
        # Its own inbox is still followed: the next change to the account reaches it.
        async with node_a.http(admin) as http:
            renamed = await http.patch(
                f"/api/v1/users/{city.standing_id}", json={"display_name": "Phùng Thị Hồng (nghỉ)"}
            )
            assert renamed.status_code == 200, renamed.text
        event = await standing.next_event("user.updated", timeout=10)
        assert event["data"]["display_name"] == "Phùng Thị Hồng (nghỉ)"
        # And subscribing again is refused: the socket acts on the new roles.
        frames = await standing.subscribe({ward_topic: 0})
        assert frames[-1]["op"] == "error" and frames[-1]["code"] == "forbidden", frames


async def test_a_user_moved_to_another_unit_stops_getting_the_old_unit(
    make_server: MakeServer,
) -> None:
    node_a, node_b, city = await _nodes(make_server)
    old_unit, new_unit = city.commune_unit_ids[0], city.commune_unit_ids[1]
    mover = city.ward_user_ids[0]
    mover_token = await _token(node_b, "ward001")
    async with node_b.http(mover_token) as http:
        channels = (await http.get("/api/v1/channels")).json()["channels"]
    old_channel = next(c["id"] for c in channels if c["kind"] == "unit")
    async with node_a.ctx.read() as session:
        channel = await session.get(Channel, old_channel)
        assert channel is not None and channel.unit_id == old_unit
    admin = await _token(node_a, "admin")
    async with (
        node_b.socket(mover_token) as moved,
        node_b.socket(await _token(node_b, "standing")) as watcher,
    ):
        frames = await watcher.subscribe({f"unit:{old_unit}": 0})
        assert frames[-1]["op"] == "subscribed", frames
        assert f"unit:{old_unit}" in moved.ready["topics"]
        frames = await moved.subscribe({f"channel:{old_channel}": 0})
        assert frames[-1]["op"] == "subscribed", frames
        async with node_a.http(admin) as http:
            changed = await http.patch(f"/api/v1/users/{mover}", json={"unit_id": new_unit})
            assert changed.status_code == 200, changed.text
        dropped: dict[str, str] = {}
        while len(dropped) < 2:
            message = await moved.recv(10)
            if message.get("op") == "unsubscribed":
                dropped[message["topic"]] = message["reason"]
        assert dropped == {
            f"unit:{old_unit}": "unit_changed",
            f"channel:{old_channel}": "unit_changed",
        }
        # Someone still in the old unit writes in its channel: the mover does not get it.
        async with node_a.ctx.write() as w:
            await w.emit(f"unit:{old_unit}", "unit.notice", {"text": "Họp giao ban"})
            await w.emit(f"channel:{old_channel}", "message.posted", {"message": {}})
        await watcher.next_event("unit.notice", timeout=10)
        later = await _frames_until_pong(moved)
        assert [
            f for f in later if f.get("topic") in (f"unit:{old_unit}", f"channel:{old_channel}")
        ] == []
