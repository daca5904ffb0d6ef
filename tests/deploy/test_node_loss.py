"""Losing a node behind nginx: SIGKILL while tablets hold sockets and events keep being
written, SIGTERM for a restart, and the scheduled work of a node that died.

Tablets here behave as the web client does: on a closed socket they connect again through
nginx at once, sign in, and resume each topic from the last seq they hold; an event with
a seq they already hold is not applied again.
"""

from __future__ import annotations

import asyncio
import json
import signal
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.deploy.cluster import Cluster, open_sockets
from tests.server.test_nodes import Node, login

# Long enough for anything below to happen several times over; never a measured figure.
PATIENCE_SECS = 20
PRESENCE_TTL_SECS = 3
RESCAN_SECS = 1
# The shortest speech a meeting allows.
SPEECH_SECS = 10


@pytest.fixture
def node_settings() -> dict[str, str]:
    return {
        "DIENHONG_PRESENCE_TTL_SECS": str(PRESENCE_TTL_SECS),
        "DIENHONG_REMINDER_POLL_SECS": str(RESCAN_SECS),
        "DIENHONG_SPEECH_TIMER_RESCAN_SECS": str(RESCAN_SECS),
        "DIENHONG_POLL_CLOSER_RECHECK_SECS": str(RESCAN_SECS),
        "DIENHONG_REMINDER_INTERVALS": "express=4,very_urgent=900,urgent=3600,normal=86400",
    }


@dataclass
class Tablet:
    """A socket through nginx that comes back by itself and keeps its last seq per topic."""

    cluster: Cluster
    token: str
    topics: list[str]
    last: dict[str, int] = field(default_factory=dict)
    applied: dict[str, list[int]] = field(default_factory=dict)
    repeats: int = 0
    closes: list[int | None] = field(default_factory=list)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    ws: Any = None
    task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        nginx = self.cluster.nginx
        self.ws = await websockets.connect(nginx.ws_url, ssl=nginx.ca, max_size=None)
        await self.ws.send(json.dumps({"op": "auth", "token": self.token}))
        ready = json.loads(await asyncio.wait_for(self.ws.recv(), PATIENCE_SECS))
        assert ready["op"] == "ready", ready
        if not self.last:
            self.last = {topic: ready["topics"][topic] for topic in self.topics}
        # Resume from what this tablet holds, not from where the new node stands.
        await self.ws.send(json.dumps({"op": "subscribe", "topics": dict(self.last)}))
        self.connected.set()

    def apply(self, message: dict[str, Any]) -> None:
        topic, seq = message["topic"], message["seq"]
        if topic not in self.last:
            return
        if seq <= self.last[topic]:
            self.repeats += 1
            return
        assert seq == self.last[topic] + 1, f"{topic}: got {seq} after {self.last[topic]}"
        self.last[topic] = seq
        self.applied.setdefault(topic, []).append(seq)

    async def run(self) -> None:
        while True:
            try:
                async for raw in self.ws:
                    message = json.loads(raw)
                    if message["op"] == "event":
                        self.apply(message)
            except ConnectionClosed:
                pass
            self.closes.append(self.ws.close_code)
            self.connected.clear()
            while True:
                try:
                    await self.connect()
                    break
                except (OSError, ConnectionClosed, websockets.InvalidStatus):
                    await asyncio.sleep(0.1)

    async def start(self) -> None:
        await self.connect()
        self.task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.ws is not None:
            await self.ws.close()


async def until(check: Any, what: str) -> None:
    for _ in range(PATIENCE_SECS * 20):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {PATIENCE_SECS} s: {what}")


async def spread_tablets(cluster: Cluster, token: str, topic: str, count: int) -> list[Tablet]:
    tablets = [Tablet(cluster, token, [topic]) for _ in range(count)]
    for tablet in tablets:
        await tablet.start()
    held = [await open_sockets(node) for node in cluster.nodes]
    assert all(n >= 1 for n in held), f"nginx gave the sockets unevenly: {held}"
    return tablets


async def topic_seq(node: Node, token: str, topic: str) -> int:
    async with websockets.connect(node.ws_url) as ws:
        await ws.send(json.dumps({"op": "auth", "token": token}))
        return int(json.loads(await ws.recv())["topics"][topic])


class Writer:
    """Renames a unit through nginx again and again; remembers what was answered 200."""

    def __init__(self, cluster: Cluster, admin: str, unit_id: int) -> None:
        self.http = cluster.nginx.http(admin)
        self.unit_id = unit_id
        self.confirmed: list[str] = []
        self.unknown = 0
        self.stopped = asyncio.Event()
        self.task = asyncio.create_task(self.run())

    async def run(self) -> None:
        n = 0
        while not self.stopped.is_set():
            name = f"Phường lần {n}"
            n += 1
            try:
                response = await self.http.patch(
                    f"/api/v1/units/{self.unit_id}", json={"name": name}
                )
            except httpx.TransportError:
                self.unknown += 1
                continue
            if response.status_code == 200:
                self.confirmed.append(name)
            else:
                # The node died while answering: nginx says so in the API's shape.
                assert response.status_code == 503, response.text
                assert response.json()["error"]["code"] == "unavailable"
                self.unknown += 1
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self.stopped.set()
        await self.task
        await self.http.aclose()


async def presence_online(node: Node, token: str, unit_id: int) -> int:
    async with httpx.AsyncClient(
        base_url=node.url, timeout=10, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        response = await client.get(f"/api/v1/units/{unit_id}/presence")
    assert response.status_code == 200, response.text
    return int(response.json()["online"])


async def test_sigkill_tablets_resume_on_the_other_node(cluster: Cluster) -> None:
    node_a, node_b = cluster.nodes
    admin = await login(node_b, "admin")
    ward = await login(node_b, "ward001")
    lonely = await login(node_b, "ward002")
    unit_id = cluster.city.commune_unit_ids[0]
    lonely_unit = cluster.city.commune_unit_ids[1]
    topic = f"unit:{unit_id}"
    tablets = await spread_tablets(cluster, ward, topic, 6)
    start = tablets[0].last[topic]
    # ward002's only socket is on node A: when A dies, so does its presence.
    async with websockets.connect(node_a.ws_url) as alone:
        await alone.send(json.dumps({"op": "auth", "token": lonely}))
        assert json.loads(await alone.recv())["op"] == "ready"
        await until(lambda: _online(node_b, admin, lonely_unit, 1), "ward002 online on B")
        writer = Writer(cluster, admin, unit_id)
        try:
            await until(lambda: _confirmed(writer, 5), "writes before the kill")
            node_a.process.send_signal(signal.SIGKILL)
            await node_a.process.wait()
            target = len(writer.confirmed) + 10
            await until(lambda: _confirmed(writer, target), "writes after the kill")
        finally:
            await writer.stop()
    try:
        final = await topic_seq(node_b, ward, topic)
        await until(lambda: _all_at(tablets, topic, final), "every tablet at the last seq")
        moved = [t for t in tablets if t.closes]
        assert moved, "no tablet was on the killed node"
        for tablet in tablets:
            # Everything, once, in order (the apply step refuses gaps).
            assert tablet.applied[topic] == list(range(start + 1, final + 1))
        # Every write that was answered 200 is among the events (renames are all distinct).
        assert final - start >= len(writer.confirmed)
        await until(lambda: _sockets_on(node_b, len(tablets)), "every tablet on node B")
        # The killed node's presence expires by itself.
        await until(lambda: _online(node_b, admin, lonely_unit, 0), "ward002 offline")
    finally:
        for tablet in tablets:
            await tablet.stop()


async def _sockets_on(node: Node, count: int) -> bool:
    return await open_sockets(node) == count


async def _online(node: Node, token: str, unit_id: int, expected: int) -> bool:
    return await presence_online(node, token, unit_id) == expected


async def _confirmed(writer: Writer, count: int) -> bool:
    assert not writer.task.done() or writer.task.result() is None
    return len(writer.confirmed) >= count


async def _all_at(tablets: list[Tablet], topic: str, seq: int) -> bool:
    return all(t.last.get(topic) == seq and t.connected.is_set() for t in tablets)


async def test_sigterm_closes_with_1012_and_tablets_come_back_at_once(
    cluster: Cluster,
) -> None:
    node_a, node_b = cluster.nodes
    admin = await login(node_b, "admin")
    ward = await login(node_b, "ward001")
    unit_id = cluster.city.commune_unit_ids[0]
    topic = f"unit:{unit_id}"
    tablets = await spread_tablets(cluster, ward, topic, 4)
    start = tablets[0].last[topic]
    try:
        node_a.process.send_signal(signal.SIGTERM)
        await until(lambda: _any_closed(tablets), "a socket closed by the restart")
        # uvicorn shuts down gracefully, then ends by the signal it caught (systemd counts
        # that as a clean stop).
        assert await asyncio.wait_for(node_a.process.wait(), PATIENCE_SECS) in (0, -signal.SIGTERM)
        closed = [t for t in tablets if t.closes]
        assert closed and all(t.closes == [1012] for t in closed)
        await until(lambda: _all_connected(tablets), "every tablet back")
        async with cluster.nginx.http(admin) as client:
            response = await client.patch(f"/api/v1/units/{unit_id}", json={"name": "Sau"})
        assert response.status_code == 200
        await until(lambda: _all_at(tablets, topic, start + 1), "the event after the restart")
        assert all(t.repeats == 0 for t in tablets)
    finally:
        for tablet in tablets:
            await tablet.stop()


async def _any_closed(tablets: list[Tablet]) -> bool:
    return any(t.closes for t in tablets)


async def _all_connected(tablets: list[Tablet]) -> bool:
    return all(t.connected.is_set() for t in tablets)


async def test_scheduled_work_of_a_killed_node_is_done_by_the_other(cluster: Cluster) -> None:
    """Reminders, speech timers and poll deadlines are never held by one node: each is a
    row in the database that every node's scheduler looks at (at least every RESCAN_SECS)
    and settles in one transaction, which a node's death rolls back."""
    node_a, node_b = cluster.nodes
    standing, chair = await login(node_a, "standing"), await login(node_a, "chair")
    delegate, ward = await login(node_a, "delegate001"), await login(node_a, "ward001")
    unit_id = cluster.city.commune_unit_ids[0]

    async with httpx.AsyncClient(base_url=node_a.url, timeout=30) as a:

        def auth(token: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {token}"}

        meetings = (await a.get("/api/v1/meetings", headers=auth(chair))).json()
        meeting = (meetings["meetings"] if isinstance(meetings, dict) else meetings)[0]["id"]
        base = f"/api/v1/meetings/{meeting}"
        user_topic = f"user:{cluster.city.ward_user_ids[0]}"
        meeting_topic = f"meeting:{meeting}"
        seqs = {
            user_topic: await topic_seq(node_b, ward, user_topic),
            meeting_topic: (await a.get(base, headers=auth(chair))).json()["seq"],
        }
        for method, path, body, token in (
            ("PATCH", base, {"speech_limit_secs": SPEECH_SECS}, chair),
            ("POST", base + "/start", None, chair),
            ("POST", base + "/attendance", {"present": True}, delegate),
        ):
            response = await a.request(method, path, json=body, headers=auth(token))
            assert response.status_code in (200, 201, 204), response.text
        floor = await a.post(base + "/speakers", json={"kind": "speech"}, headers=auth(delegate))
        assert floor.status_code == 201, floor.text
        granted = await a.post(base + f"/speakers/{floor.json()['id']}/grant", headers=auth(chair))
        assert granted.status_code == 200, granted.text
        poll = await a.post(
            base + "/polls",
            headers=auth(chair),
            json={
                "title": "Biểu quyết",
                "kind": "yes_no_abstain",
                "secret": False,
                "rule": "majority_of_members",
                "duration_secs": 3,
            },
        )
        assert poll.status_code == 201, poll.text
        opened = await a.post(f"/api/v1/polls/{poll.json()['id']}/open", headers=auth(chair))
        assert opened.status_code == 200, opened.text
        issued = await a.post(
            "/api/v1/directives",
            headers=auth(standing),
            json={
                "title": "Báo cáo tình hình bão số 3",
                "body": "Báo cáo ngay.",
                "urgency": "express",
                "ack_required": True,
                "targets": {"unit_ids": [unit_id], "include_descendants": False},
            },
        )
        assert issued.status_code == 201, issued.text
    # Node A dies before any of it is due.
    node_a.process.send_signal(signal.SIGKILL)
    await node_a.process.wait()

    seen: dict[str, list[dict[str, Any]]] = {user_topic: [], meeting_topic: []}
    tokens = {user_topic: ward, meeting_topic: chair}
    wanted = {user_topic: "directive.reminder", meeting_topic: ""}

    async def watch(topic: str) -> None:
        async with websockets.connect(node_b.ws_url, max_size=None) as ws:
            await ws.send(json.dumps({"op": "auth", "token": tokens[topic]}))
            await ws.recv()
            await ws.send(json.dumps({"op": "subscribe", "topics": {topic: seqs[topic]}}))
            while True:
                message = json.loads(await ws.recv())
                if message["op"] == "event" and message["topic"] == topic:
                    seen[topic].append(message)

    watchers = [asyncio.create_task(watch(topic)) for topic in seen]
    try:

        def types(topic: str) -> list[str]:
            return [event["type"] for event in seen[topic]]

        async def all_done() -> bool:
            meeting_types = types(meeting_topic)
            return (
                "speaker.time_up" in meeting_types
                and "poll.closed" in meeting_types
                and wanted[user_topic] in types(user_topic)
            )

        await until(all_done, "node B sends the reminder, ends the speech, closes the poll")
    finally:
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
    # Each went out once.
    meeting_types = types(meeting_topic)
    assert meeting_types.count("speaker.time_up") == 1
    assert meeting_types.count("poll.closed") == 1
    numbers = [e["data"]["reminder"] for e in seen[user_topic] if e["type"] == "directive.reminder"]
    assert numbers == list(range(1, len(numbers) + 1))
