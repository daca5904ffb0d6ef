"""Fan-out internals: the direct write path, the broker's packed messages, the log sweep."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from server.realtime.broker import RedisBroker, pack_events, unpack_events
from server.realtime.hub import Signal
from server.realtime.log import Event, frame_tail
from server.realtime.transport import FrameTail, PreparedFrame
from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.harness import RunningServer
from tests.server.support import small_city
from tests.server.test_realtime import emit, events_until


class DroppingBroker:
    """A broker that loses every event, as a Redis outage would."""

    async def publish(self, events: Sequence[Event]) -> None:
        return None

    async def publish_signal(self, signal: Signal) -> None:
        return None


async def test_live_events_are_written_below_asgi(make_server: MakeServer) -> None:
    server = await make_server(features=[])
    city = await small_city(server)
    unit = f"unit:{city.commune_unit_ids[0]}"
    token = await server.login("ward001", DEMO_PASSWORD)
    async with server.socket(token) as ws:
        [connection] = server.ctx.hub.connections
        direct = connection._direct
        assert direct is not None, "uvicorn runs the protocol with the direct write path"
        results: list[bool] = []
        original = direct.try_send

        def counting(frame: PreparedFrame) -> bool:
            results.append(original(frame))
            return results[-1]

        direct.try_send = counting  # type: ignore[method-assign]
        seqs = await emit(server, unit, 3, n=1)
        assert await events_until(ws, unit, seqs[-1]) == seqs
        assert results == [True, True, True]
        # Control frames still take the ASGI path and arrive in order with the events.
        await ws.send(op="ping")
        assert (await ws.recv())["op"] == "pong"


def make_events(count: int) -> list[Event]:
    at = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    return [
        Event.create(
            f"user:{n}",
            n + 1,
            "directive.issued",
            {"title": "Khẩn: ứng phó mưa lớn", "body": "dòng 1\ndòng 2\r\n\u2028", "n": n},
            at,
        )
        for n in range(count)
    ]


def packed_frames(events: Sequence[Event]) -> str:
    """A message as nodes of the previous release publish it: every whole frame."""
    headers = [[e.topic, e.seq, e.type, e.at.isoformat()] for e in events]
    return "\n".join(["E1" + json.dumps(headers), *(e.frame for e in events)])


def test_packed_events_round_trip() -> None:
    events = make_events(5)
    text = pack_events(events)
    back = unpack_events(text)
    assert [(e.topic, e.seq, e.type, e.at, e.frame) for e in back] == [
        (e.topic, e.seq, e.type, e.at, e.frame) for e in events
    ]
    assert back[0].data == events[0].data
    # A line break inside the data is escaped in the frame, never a raw one.
    assert text.count("\n") == len(events)
    # Messages of the previous release still read the same.
    old = unpack_events(packed_frames(events))
    assert [(e.topic, e.seq, e.frame) for e in old] == [(e.topic, e.seq, e.frame) for e in events]


def test_one_write_to_many_topics_carries_its_payload_once() -> None:
    at = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    data = {"title": "Khẩn: sơ tán dân", "body": "Nội dung " * 100, "urgent": True}
    tail = FrameTail(frame_tail("directive.issued", data, at))
    events = [
        Event.create(f"user:{n}", n % 7 + 1, "directive.issued", data, at, tail)
        for n in range(1000)
    ]
    # Each frame is exactly the compact JSON of the event, as every client parses it.
    for event in events[:3]:
        assert event.frame == json.dumps(
            {
                "op": "event",
                "topic": event.topic,
                "seq": event.seq,
                "type": event.type,
                "data": data,
                "at": "2026-11-23T08:00:00+00:00",
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )
    text = pack_events(events)
    assert text.count("Nội dung") == 100  # the payload once, not once per recipient
    assert len(text) < len(events[0].frame) + 40 * len(events)
    back = unpack_events(text)
    assert [(e.topic, e.seq, e.type, e.at, e.frame) for e in back] == [
        (e.topic, e.seq, e.type, e.at, e.frame) for e in events
    ]
    assert [e.prepared.wire for e in back[:5]] == [e.prepared.wire for e in events[:5]]
    assert back[3].data == data
    # Events of several writes in one message keep their own tails.
    mixed = [*events[:2], *make_events(2), events[2]]
    assert [e.frame for e in unpack_events(pack_events(mixed))] == [e.frame for e in mixed]


@pytest.mark.parametrize(
    "text",
    [
        "E1[]\n{}",  # more frames than headers
        'E1[["user:1", 1, "t", "2026-11-23T08:00:00+00:00"]]',  # a header without its frame
        "E1not json\n{}",
        'E1[["user:1", "x", "t", "2026-11-23T08:00:00+00:00"]]\n{}',
        'E2{"t":[],"e":[]}\n,"x":1}',  # a tail without its [type, at]
        'E2{"t":[["t","2026-11-23T08:00:00+00:00"]],"e":[["user:1",1,1]]}\n}',  # no tail 1
        'E2{"t":[["t","2026-11-23T08:00:00+00:00"]],"e":[["user:1",1,-1]]}\n}',
        'E2{"t":[["t","2026-11-23T08:00:00+00:00"]],"e":[["user:1","1",0]]}\n}',
        'E2{"t":[[1,"2026-11-23T08:00:00+00:00"]],"e":[["user:1",1,0]]}\n}',
        'E2{"t":[["t","yesterday"]],"e":[["user:1",1,0]]}\n}',
        'E2{"e":[]}',
        "E2[]",
        "E3{}",
    ],
)
def test_malformed_packed_messages_are_refused(text: str) -> None:
    with pytest.raises((ValueError, TypeError, KeyError, IndexError)):
        unpack_events(text)


async def test_broker_reads_packed_legacy_and_malformed_messages() -> None:
    broker = RedisBroker("redis://127.0.0.1:1/0", "test")
    got: list[list[Event]] = []

    async def deliver(events: Sequence[Event]) -> None:
        got.append(list(events))

    broker._deliver = deliver
    events = make_events(3)
    await broker._handle(pack_events(events).encode())
    await broker._handle(packed_frames(events).encode())
    legacy: dict[str, Any] = {
        "f": [[e.topic, e.seq, e.type, e.at.isoformat(), e.frame] for e in events]
    }
    await broker._handle(json.dumps(legacy).encode())
    await broker._handle(b"E1[]\n{}")
    await broker._handle(b'E2{"t":[],"e":[["user:1",1,0]]}')
    await broker._handle(b"\xff\xfe")
    assert [[e.seq for e in batch] for batch in got] == [[1, 2, 3]] * 3
    await broker._redis.aclose()
    await broker._subscriber.aclose()


async def test_patient_sweep_leaves_events_in_flight_one_interval(
    make_server: MakeServer,
) -> None:
    # No sweeper of its own during the test: the test runs each sweep.
    server: RunningServer = await make_server(features=[], log_sweep_interval_secs=3600)
    city = await small_city(server)
    unit = f"unit:{city.commune_unit_ids[0]}"
    token = await server.login("ward001", DEMO_PASSWORD)
    async with server.socket(token) as ws:
        live = await emit(server, unit)
        assert await events_until(ws, unit, live[0]) == live
        broker = server.ctx.broker
        server.ctx.broker = DroppingBroker()  # type: ignore[assignment]
        try:
            lost = await emit(server, unit, 2)
        finally:
            server.ctx.broker = broker
        hub = server.ctx.hub
        # The first sweep sees the topic behind but gives the broker time to deliver.
        await hub._sweep(patient=True)
        with pytest.raises(TimeoutError):
            await ws.recv(0.3)
        # Still behind at the next sweep: recovered from the log, in order.
        await hub._sweep(patient=True)
        assert await events_until(ws, unit, lost[-1]) == lost
        # After the broker came back (resync), recovery is immediate.
        server.ctx.broker = DroppingBroker()  # type: ignore[assignment]
        try:
            lost = await emit(server, unit)
        finally:
            server.ctx.broker = broker
        await hub.sweep()
        assert await events_until(ws, unit, lost[-1]) == lost
        await asyncio.sleep(0)


@pytest.mark.parametrize("size", [0, 125, 126, 65_535, 65_536, 70_000])
def test_prepared_frames_are_what_websockets_would_send(size: int) -> None:
    from websockets.frames import OP_TEXT, Frame

    text = ("đ" * size)[:size] if size % 2 else "a" * size
    prepared = PreparedFrame(text)
    expected = Frame(OP_TEXT, text.encode()).serialize(mask=False, extensions=[])
    assert prepared.wire == expected
    assert prepared.encoded == text.encode()
    # Made from a head and a shared tail (another node's event): the same bytes, and the
    # same text, whichever is asked for first.
    cut = size // 3
    for first in ("wire", "encoded", "text"):
        parts = PreparedFrame(head=text[:cut], tail=FrameTail(text[cut:]))
        getattr(parts, first)
        assert (parts.wire, parts.encoded, parts.text) == (expected, text.encode(), text)


async def test_compressed_sockets_are_framed_per_socket(make_server: MakeServer) -> None:
    server = await make_server(features=[], ws_per_message_deflate=True)
    city = await small_city(server)
    unit = f"unit:{city.commune_unit_ids[0]}"
    token = await server.login("ward001", DEMO_PASSWORD)
    async with server.socket(token, compression="deflate") as ws:
        [connection] = server.ctx.hub.connections
        assert connection._direct is not None and connection._direct.conn.extensions
        seqs = await emit(server, unit, 2, text="Khẩn " * 200)
        assert await events_until(ws, unit, seqs[-1]) == seqs
