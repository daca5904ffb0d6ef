"""The /ws gateway: resume, reset, permissions, hostile frames, slow sockets, heartbeats."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Sequence
from typing import Any

import pytest
import websockets
from sqlalchemy import select

from server.app import prune_event_log
from server.audit import AuditRecord
from server.clock import ManualClock
from server.demo import DemoCity
from server.features import Feature, Received
from server.realtime.models import EventRecord
from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.harness import RunningServer, eventually
from tests.server.support import RawSocket, audit_actions, metric, small_city


@pytest.fixture
async def core(make_server: MakeServer) -> RunningServer:
    """A server with the core only: no feature sends signals or events of its own."""
    return await make_server(features=[])


@pytest.fixture
async def core_city(core: RunningServer) -> DemoCity:
    return await small_city(core)


async def emit(server: RunningServer, topic: str, count: int = 1, **data: Any) -> list[int]:
    """Commit ``count`` events on ``topic`` through the one write path; their seqs."""
    seqs = []
    for _ in range(count):
        async with server.ctx.write() as w:
            seqs.append((await w.emit(topic, "test.note", dict(data))).seq)
    return seqs


async def events_until(ws: Any, topic: str, seq: int, timeout: float = 10.0) -> list[int]:
    """Seqs of ``topic`` received until ``seq`` arrives."""
    got: list[int] = []
    while not got or got[-1] < seq:
        message = await ws.recv(timeout)
        if message["op"] == "event" and message["topic"] == topic:
            got.append(message["seq"])
    return got


async def test_seqs_are_gapless_under_concurrent_writers(core: RunningServer) -> None:
    server = core
    topics = [f"meeting:{n}" for n in range(1, 4)]
    per_writer = 6

    async def writer(index: int) -> None:
        chooser = random.Random(index)
        for _ in range(per_writer):
            async with server.ctx.write() as w:
                for topic in chooser.sample(topics, 2):
                    await w.emit(topic, "test.note", {"writer": index})
                await w.audit(None, "test.write", f"writer:{index}")

    await asyncio.gather(*(writer(i) for i in range(12)))
    async with server.ctx.read() as session:
        rows = (await session.execute(select(EventRecord.topic, EventRecord.seq))).all()
    by_topic: dict[str, list[int]] = {}
    for topic, seq in rows:
        by_topic.setdefault(topic, []).append(seq)
    assert sum(len(seqs) for seqs in by_topic.values()) == 12 * per_writer * 2
    for seqs in by_topic.values():
        assert sorted(seqs) == list(range(1, len(seqs) + 1))


async def test_ready_subscribe_resume_and_live(core: RunningServer, core_city: DemoCity) -> None:
    server, city = core, core_city
    unit = f"unit:{city.commune_unit_ids[0]}"
    await emit(server, unit, 5, n=1)
    token = await server.login("ward001", DEMO_PASSWORD)
    async with server.socket(token) as ws:
        assert ws.ready["user_id"] == city.ward_user_ids[0]
        assert ws.ready["topics"] == {f"user:{city.ward_user_ids[0]}": 0, unit: 5}
        # Resubscribing from seq 2 replays 3..5 in order, then subscribed, then live.
        frames = await ws.subscribe({unit: 2})
        assert [(f["op"], f.get("seq")) for f in frames] == [
            ("event", 3),
            ("event", 4),
            ("event", 5),
            ("subscribed", 5),
        ]
        assert frames[0]["type"] == "test.note" and frames[0]["data"] == {"n": 1}
        assert set(frames[0]) == {"op", "topic", "seq", "type", "data", "at"}
        await emit(server, unit, 2)
        assert await events_until(ws, unit, 7) == [6, 7]
        # Unsubscribed: no more events of that topic; pings still answered.
        await ws.send(op="unsubscribe", topics=[unit])
        await emit(server, unit)
        await ws.send(op="ping")
        while (message := await ws.recv())["op"] != "pong":
            assert message.get("topic") != unit
        # A seq from the future (another database) gives reset to the present.
        frames = await ws.subscribe({unit: 50})
        assert [(f["op"], f.get("seq")) for f in frames] == [("reset", 8), ("subscribed", 8)]


async def test_pruned_history_gives_reset(make_server: MakeServer) -> None:
    clock = ManualClock()
    server = await make_server(features=[], clock=clock, event_retention_secs=3600)
    city = await small_city(server)
    unit = f"unit:{city.commune_unit_ids[0]}"
    await emit(server, unit, 3)
    await clock.advance(7200)
    await emit(server, unit, 2)
    assert await prune_event_log(server.ctx) >= 3
    async with server.ctx.read() as session:
        left = (
            (
                await session.execute(
                    select(EventRecord.seq)
                    .where(EventRecord.topic == unit)
                    .order_by(EventRecord.seq)
                )
            )
            .scalars()
            .all()
        )
    assert left == [4, 5]
    token = await server.login("ward001", DEMO_PASSWORD)
    async with server.socket(token) as ws:
        frames = await ws.subscribe({unit: 1})
        assert [(f["op"], f.get("seq")) for f in frames] == [("reset", 5), ("subscribed", 5)]
        # From the cut itself nothing is missing: a normal resume.
        frames = await ws.subscribe({unit: 3})
        assert [(f["op"], f.get("seq")) for f in frames] == [
            ("event", 4),
            ("event", 5),
            ("subscribed", 5),
        ]
        await emit(server, unit)
        assert await events_until(ws, unit, 6) == [6]


async def test_forbidden_topics(core: RunningServer, core_city: DemoCity) -> None:
    server, city = core, core_city
    token = await server.login("ward001", DEMO_PASSWORD)
    forbidden = [
        f"unit:{city.root_unit_id}",
        f"unit:{city.commune_unit_ids[1]}",
        f"user:{city.ward_user_ids[1]}",
        "meeting:999999",
        "nonsense:1",
    ]
    async with server.socket(token) as ws:
        frames = await ws.subscribe(dict.fromkeys(forbidden, 0))
        assert sorted(f["topic"] for f in frames) == sorted(forbidden)
        assert {(f["op"], f["code"]) for f in frames} == {("error", "forbidden")}
        await emit(server, forbidden[0])
        await ws.send(op="ping")
        assert (await ws.recv())["op"] == "pong"
    refusals = [s for a, s in await audit_actions(server) if a == "access.refused"]
    # One record for the frame, naming the first refused topic (its details the count).
    assert refusals == [next(iter(forbidden))]
    # The standing committee may follow the units below its own.
    standing = await server.login("standing", DEMO_PASSWORD)
    async with server.socket(standing) as ws:
        frames = await ws.subscribe({f"unit:{city.commune_unit_ids[1]}": 0})
        assert frames[-1]["op"] == "subscribed"


async def closed_after(
    server: RunningServer, token: str, *frames: Any
) -> tuple[int | None, str | None]:
    """The close code and reason the server sends after ``frames``."""
    async with websockets.connect(server.ws_url, max_size=None) as ws:
        await ws.send(json.dumps({"op": "auth", "token": token}))
        assert json.loads(await ws.recv())["op"] == "ready"
        for item in frames:
            await ws.send(item if isinstance(item, str | bytes) else json.dumps(item))
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 10)
    return ws.close_code, ws.close_reason


async def close_code_after(server: RunningServer, token: str, *frames: Any) -> int | None:
    code, _reason = await closed_after(server, token, *frames)
    return code


async def test_hostile_frames_close_the_socket_and_spare_the_others(
    make_server: MakeServer,
) -> None:
    server = await make_server(
        features=[],
        ws_max_frame_bytes=4096,
        ws_rate_burst=20,
        ws_rate_per_sec=1.0,
        ws_auth_timeout_secs=0.5,
    )
    city = await small_city(server)
    bystander_token = await server.login("ward002", DEMO_PASSWORD)
    token = await server.login("ward001", DEMO_PASSWORD)
    bystander_unit = f"unit:{city.commune_unit_ids[1]}"
    async with server.socket(bystander_token) as bystander:
        # The reason says what was wrong, for whoever reads the client's log.
        cases: list[tuple[int, str, Sequence[Any]]] = [
            (4400, "not JSON", ["{not json"]),
            (4400, "a frame is a JSON object", ["[1, 2]"]),
            (4400, "unknown op 'dance'", [{"op": "dance"}]),
            (4400, "binary frames", [b"\x00\x01binary"]),
            (4400, "subscribe needs an object", [{"op": "subscribe", "topics": ["unit:1"]}]),
            (4400, "malformed topic 'unit:abc'", [{"op": "subscribe", "topics": {"unit:abc": 0}}]),
            (4400, "non-negative", [{"op": "subscribe", "topics": {"unit:1": -1}}]),
            (4400, "non-negative", [{"op": "received", "topic": "unit:1", "seq": "7"}]),
            (4400, "...", [{"op": "dance" + "é" * 200}]),
            (1009, "", ["x" * 5000]),
            (4429, "more frames than", [{"op": "ping"}] * 40),
        ]
        for expected, reason, frames in cases:
            code, said = await closed_after(server, token, *frames)
            assert code == expected, frames
            assert said is not None and reason in said, (said, frames)
            assert len(said.encode()) <= 123
            # The server stays up for the others.
            await emit(server, bystander_unit)
            await bystander.next_event("test.note")
        # Authentication: wrong first frame, bad token, no frame at all.
        for first, reason in (
            ({"op": "ping"}, "the first frame must be auth"),
            ({"op": "auth", "token": "nope"}, "token"),
            ({"op": "auth"}, "auth needs a token"),
            ("{", "the first frame must be auth"),
        ):
            async with websockets.connect(server.ws_url) as ws:
                await ws.send(first if isinstance(first, str) else json.dumps(first))
                with pytest.raises(websockets.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 4401, first
            assert ws.close_reason is not None and reason in ws.close_reason, first
        async with websockets.connect(server.ws_url) as ws:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
        assert (ws.close_code, ws.close_reason) == (4401, "no auth frame in time")
        await bystander.send(op="ping")
        while (await bystander.recv())["op"] != "pong":
            pass
    assert server.ctx.hub.connections == set()


async def test_origin_allow_list(make_server: MakeServer) -> None:
    server = await make_server(features=[], allowed_origins=("https://hdnd.example.vn",))
    await small_city(server)
    token = await server.login("ward001", DEMO_PASSWORD)
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(server.ws_url, origin="https://evil.example"):
            pass
    assert refused.value.response.status_code == 403
    for origin in ("https://hdnd.example.vn", server.url):
        async with server.socket(token, origin=origin) as ws:
            assert ws.ready["op"] == "ready"


async def test_received_only_for_what_the_socket_was_sent(make_server: MakeServer) -> None:
    batches: list[list[Received]] = []

    async def record(ctx: Any, batch: Sequence[Received]) -> None:
        batches.append(list(batch))

    server = await make_server(features=[Feature(name="probe", received_handlers=[record])])
    city = await small_city(server)
    inbox = f"user:{city.ward_user_ids[0]}"
    token = await server.login("ward001", DEMO_PASSWORD)
    async with server.socket(token) as ws:
        await emit(server, inbox, 2)
        assert await events_until(ws, inbox, 2) == [1, 2]
        await ws.send(op="received", topic=inbox, seq=5)  # never sent: ignored
        await ws.send(op="received", topic=f"user:{city.ward_user_ids[1]}", seq=1)
        await ws.send(op="received", topic=inbox, seq=1)
        await ws.send(op="received", topic=inbox, seq=2)
        await ws.send(op="ping")
        while (await ws.recv())["op"] != "pong":
            pass
        await eventually(lambda: batches, "the received handler to be called")
    assert batches == [[Received(city.ward_user_ids[0], inbox, 2)]]


async def test_server_heartbeats(make_server: MakeServer) -> None:
    server = await make_server(features=[], ws_ping_interval_secs=0.2, ws_ping_timeout_secs=5.0)
    await small_city(server)
    token = await server.login("ward001", DEMO_PASSWORD)
    raw = await RawSocket.connect(server.ws_url)
    try:
        await raw.send(op="auth", token=token)
        assert (await raw.next_text())["op"] == "ready"
        while raw.pings < 3:
            await raw._pump()
        # Pongs went back, so the server keeps the socket open.
        await raw.send(op="ping")
        while (await raw.next_text())["op"] != "pong":
            pass
    finally:
        await raw.aclose()


async def test_slow_client_is_cut_off_without_delaying_others(
    make_server: MakeServer,
) -> None:
    server = await make_server(features=[], ws_send_queue_frames=8)
    city = await small_city(server)
    unit = f"unit:{city.commune_unit_ids[0]}"
    slow = await RawSocket.connect(server.ws_url, rcvbuf=4096)
    fast_token = await server.login("admin", DEMO_PASSWORD)
    try:
        await slow.send(op="auth", token=await server.login("ward001", DEMO_PASSWORD))
        assert (await slow.next_text())["op"] == "ready"
        async with server.socket(fast_token) as fast:
            await fast.subscribe({unit: 0})
            blob = "đ" * 30_000
            sent = 0
            # The slow socket reads nothing from here on; the fast one gets every event
            # as it is produced, while the slow one's buffers fill up and it is cut off.
            while metric(server, "dienhong_socket_queue_overflows_total") == 0:
                assert sent < 2000, "the slow socket was never cut off"
                sent = (await emit(server, unit, blob=blob))[0]
                assert await events_until(fast, unit, sent) == [sent]
            for _ in range(5):
                sent = (await emit(server, unit, blob=blob))[0]
                assert await events_until(fast, unit, sent) == [sent]
            assert len(server.ctx.hub.connections) == 1
        # When it reads again it finds a prefix of the events, then the close code.
        await slow.read_until_closed()
        assert slow.close_code == 4408
        seqs = [json.loads(text)["seq"] for text in slow.texts]
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) < sent
    finally:
        await slow.aclose()


async def test_slow_client_is_cut_off_by_bytes_as_well_as_frames(
    make_server: MakeServer,
) -> None:
    # So many frames are allowed that only the byte bound can cut the socket off.
    server = await make_server(
        features=[], ws_send_queue_frames=100_000, ws_send_queue_bytes=256 * 1024
    )
    city = await small_city(server)
    unit = f"unit:{city.commune_unit_ids[0]}"
    slow = await RawSocket.connect(server.ws_url, rcvbuf=4096)
    try:
        await slow.send(op="auth", token=await server.login("ward001", DEMO_PASSWORD))
        assert (await slow.next_text())["op"] == "ready"
        blob = "đ" * 30_000  # 60 KB of UTF-8 per event
        sent = 0
        while metric(server, "dienhong_socket_queue_overflows_total") == 0:
            # Kernel and transport buffers take a few MB; 256 KB of queue a few frames more.
            assert sent < 400, "the slow socket was never cut off"
            sent = (await emit(server, unit, blob=blob))[0]
        await slow.read_until_closed()
        assert slow.close_code == 4408
    finally:
        await slow.aclose()


async def test_abusive_frames_close_with_4400_and_refusals_are_audited_once(
    make_server: MakeServer,
) -> None:
    server = await make_server(features=[], ws_max_topics_per_frame=50)
    city = await small_city(server)
    token = await server.login("ward001", DEMO_PASSWORD)
    big = 2**63
    cases: list[Any] = [
        "[" * 3000,  # nested too deep to parse
        '{"op": "subscribe", "topics": ' + '{"a":' * 3000 + "}",
        '{"op": "received", "topic": "unit:1", "seq": ' + "9" * 5000 + "}",  # too long
        {"op": "subscribe", "topics": {f"unit:{big}": 0}},
        {"op": "subscribe", "topics": {f"unit:{city.commune_unit_ids[0]}": big}},
        {"op": "subscribe", "topics": {"meeting:" + "9" * 90: 0}},
        {"op": "received", "topic": f"unit:{city.commune_unit_ids[0]}", "seq": big},
        # More topics than one frame may name.
        {"op": "subscribe", "topics": {f"user:{n}": 0 for n in range(1, 52)}},
    ]
    for frame_ in cases:
        assert await close_code_after(server, token, frame_) == 4400, str(frame_)[:80]
    assert not [a for a, _ in await audit_actions(server) if a == "access.refused"]
    # A storm of forbidden topics within the cap: each refused, one audit record.
    forbidden = {f"user:{n}": 0 for n in range(10_000, 10_050)}
    async with server.socket(token) as ws:
        frames = await ws.subscribe(forbidden)
        assert len(frames) == 50 and {f["code"] for f in frames} == {"forbidden"}

    async def refusals() -> Sequence[AuditRecord]:
        async with server.ctx.read() as session:
            return (
                (
                    await session.execute(
                        select(AuditRecord).where(AuditRecord.action == "access.refused")
                    )
                )
                .scalars()
                .all()
            )

    # The record is written once the refusals are sent: it may land just after them.
    await eventually(refusals, what="the refusals' audit record", timeout=10)
    rows = await refusals()
    assert len(rows) == 1
    assert rows[0].details["count"] == 50 and len(rows[0].details["topics"]) == 20


async def test_the_rate_limit_is_per_user_and_survives_reconnects(
    make_server: MakeServer,
) -> None:
    server = await make_server(features=[], ws_rate_burst=6, ws_rate_per_sec=0.01)
    await small_city(server)
    token = await server.login("ward001", DEMO_PASSWORD)
    # Two sockets of one user share one budget.
    async with server.socket(token) as first, server.socket(token) as second:
        for ws in (first, second, first, second):
            await ws.send(op="ping")
            assert (await ws.recv())["op"] == "pong"
    # Reconnecting does not buy a new burst: 2 frames left, the third closes with 4429.
    assert await close_code_after(server, token, *[{"op": "ping"}] * 3) == 4429
    assert await close_code_after(server, token, {"op": "ping"}) == 4429
    # Another user has a budget of its own.
    other = await server.login("ward002", DEMO_PASSWORD)
    async with server.socket(other) as ws:
        await ws.send(op="ping")
        assert (await ws.recv())["op"] == "pong"
