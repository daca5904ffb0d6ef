"""A reconnect storm: catch-up reads batched across topics and sockets, no needless reads."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select, update

import server.realtime.gateway as gateway_module
from server.app import prune_event_log
from server.auth.principal import Principal
from server.batched_reads import BatchedReads
from server.clock import ManualClock
from server.demo import DemoCity
from server.errors import Unauthorized
from server.http import principal_for_token
from server.org.models import User
from server.realtime.broker import RedisBroker, merge_signals
from server.realtime.hub import Signal
from server.realtime.log import read_events, topic_position
from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.harness import REDIS_URL, RunningServer
from tests.server.support import small_city


async def emit(server: RunningServer, topic: str, count: int) -> list[int]:
    seqs = []
    for n in range(count):
        async with server.ctx.write() as w:
            seqs.append((await w.emit(topic, "test.note", {"n": n})).seq)
    return seqs


def count_read_sessions(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts every read session the server's database opens from now on."""
    db = server.ctx.db
    opened = [0]
    original = db.read_session

    @contextlib.asynccontextmanager
    async def counted() -> AsyncIterator[Any]:
        opened[0] += 1
        async with original() as session:
            yield session

    monkeypatch.setattr(db, "read_session", counted)
    return opened


def count_single_reads(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The parameters of every statement read without a transaction from now on."""
    db = server.ctx.db
    statements: list[Any] = []
    original = db.read_rows

    async def counted(statement: Any, params: Any = None) -> Any:
        statements.append(params)
        return await original(statement, params)

    monkeypatch.setattr(db, "read_rows", counted)
    return statements


async def test_catch_ups_asked_together_are_one_read_and_exact(
    make_server: MakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock()
    server = await make_server(features=[], clock=clock, event_retention_secs=3600, resume_batch=3)
    hub = server.ctx.hub
    await emit(server, "unit:1", 2)
    await clock.advance(7200)
    await emit(server, "unit:1", 5)  # seqs 3..7; 1..2 are pruned below
    await emit(server, "unit:2", 2)
    await emit(server, "user:9", 4)
    assert await prune_event_log(server.ctx) >= 2
    asked = [
        ("unit:1", 0),  # before the cut: reset
        ("unit:1", 2),  # at the cut: 3, 4, 5 (the batch limit)
        ("unit:1", 2),  # the same again, from another socket
        ("unit:1", 5),  # 6, 7
        ("unit:1", 7),  # current: nothing
        ("unit:2", 0),  # 1, 2
        ("unit:2", 9),  # ahead of the log: reset
        ("user:9", 1),  # 2, 3, 4
        ("user:404", 0),  # never had an event
    ]
    opened = count_read_sessions(server, monkeypatch)
    answers = await asyncio.gather(*(hub.read_for_catch_up(t, s) for t, s in asked))
    assert opened[0] == 1
    got = {
        (t, s): (position, [e.seq for e in events])
        for (t, s), (position, events) in zip(asked, answers, strict=True)
    }
    assert [(position.seq, position.pruned_through, seqs) for position, seqs in got.values()] == [
        (7, 2, []),
        (7, 2, [3, 4, 5]),
        (7, 2, [6, 7]),
        (7, 2, []),
        (2, 0, [1, 2]),
        (2, 0, []),
        (4, 0, [2, 3, 4]),
        (0, 0, []),
    ]
    # Exactly what one read per topic gives, payloads and all.
    for topic, seq in asked:
        async with server.ctx.read() as session:
            position = await topic_position(session, topic)
            events = await read_events(session, topic, seq, 3)
        mine = got[(topic, seq)]
        assert mine[0] == position
        if position.pruned_through <= seq <= position.seq:
            assert [e.frame for e in answers[asked.index((topic, seq))][1]] == [
                e.frame for e in events
            ]


async def test_many_sockets_resume_at_once_exactly(make_server: MakeServer) -> None:
    server = await make_server(features=[], resume_batch=2)
    city: DemoCity = await small_city(server)
    user_ids = city.ward_user_ids[:4]
    async with server.ctx.read() as session:
        unit_of = dict(
            (
                await session.execute(select(User.id, User.unit_id).where(User.id.in_(user_ids)))
            ).all()
        )
    units = sorted({f"unit:{unit_of[u]}" for u in user_ids})
    for topic in [*units, *(f"user:{u}" for u in user_ids)]:
        await emit(server, topic, 5)
    tokens = [await server.login(f"ward00{n}", DEMO_PASSWORD) for n in range(1, 5)]
    async with contextlib.AsyncExitStack() as stack:
        sockets = [await stack.enter_async_context(server.socket(t)) for t in tokens]
        asked = [
            {f"user:{ws.ready['user_id']}": n % 3, f"unit:{unit_of[ws.ready['user_id']]}": n}
            for n, ws in enumerate(sockets)
        ]
        frames = await asyncio.gather(
            *(ws.subscribe(topics) for ws, topics in zip(sockets, asked, strict=True))
        )
        for topics, got in zip(asked, frames, strict=True):
            by_topic: dict[str, list[tuple[str, int]]] = {}
            for message in got:
                by_topic.setdefault(message["topic"], []).append((message["op"], message["seq"]))
            assert by_topic == {
                topic: [*(("event", s) for s in range(seq + 1, 6)), ("subscribed", 5)]
                for topic, seq in topics.items()
            }
        # Live again: the next event reaches each socket once.
        for ws in sockets:
            inbox = f"user:{ws.ready['user_id']}"
            await emit(server, inbox, 1)
            message = await ws.recv()
            assert (message["op"], message["topic"], message["seq"]) == ("event", inbox, 6)


async def test_own_unit_needs_no_permission_read(
    make_server: MakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await make_server(features=[])
    city = await small_city(server)
    checked: list[int] = []
    original = gateway_module.may_watch_unit

    async def counted(session: Any, principal: Any, unit_id: int) -> bool:
        checked.append(unit_id)
        return await original(session, principal, unit_id)

    monkeypatch.setattr(gateway_module, "may_watch_unit", counted)
    own, other = city.commune_unit_ids[0], city.commune_unit_ids[1]
    token = await server.login("ward001", DEMO_PASSWORD)
    async with server.socket(token) as ws:
        frames = await ws.subscribe({f"unit:{own}": 0})
        assert [(f["op"], f["topic"]) for f in frames] == [("subscribed", f"unit:{own}")]
        assert checked == []
        # Another unit is still checked, and refused to a ward's staff.
        frames = await ws.subscribe({f"unit:{other}": 0})
        assert [(f["op"], f.get("code")) for f in frames] == [("error", "forbidden")]
        assert checked == [other]


async def test_sockets_starting_together_read_their_seqs_once(
    make_server: MakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await make_server(features=[])
    await emit(server, "unit:1", 2)
    await emit(server, "user:5", 3)
    hub = server.ctx.hub
    opened = count_read_sessions(server, monkeypatch)
    statements = count_single_reads(server, monkeypatch)
    answers = await asyncio.gather(
        hub.read_current_seqs(["user:5", "unit:1"]),
        hub.read_current_seqs(["user:6", "unit:1"]),
        hub.read_current_seqs(["user:7", "unit:2"]),
    )
    # One statement, without a transaction around it.
    assert (opened[0], len(statements)) == (0, 1)
    assert sorted(statements[0]["names"]) == ["unit:1", "unit:2", "user:5", "user:6", "user:7"]
    assert answers == [
        {"user:5": 3, "unit:1": 2},
        {"user:6": 0, "unit:1": 2},
        {"user:7": 0, "unit:2": 0},
    ]


async def test_batched_reads_answer_together_and_fail_together() -> None:
    rounds: list[list[str]] = []
    failing = [True]

    async def read(keys: Any) -> dict[str, int]:
        rounds.append(list(keys))
        if failing[0]:
            raise ConnectionError("database away")
        return {key: len(key) for key in keys if key != "missing"}

    reads: BatchedReads[str, int] = BatchedReads(read)
    failed = await asyncio.gather(
        reads.get("a"), reads.get_many(["bb", "a"]), return_exceptions=True
    )
    assert [type(result) for result in failed] == [ConnectionError, ConnectionError]
    failing[0] = False
    answers = await asyncio.gather(
        reads.get("a"), reads.get_many(["bb", "a"]), reads.get("missing"), return_exceptions=True
    )
    # One read per round, each key once; a key the read has no value for fails its asker.
    assert rounds == [["a", "bb"], ["a", "bb", "missing"]]
    assert answers[:2] == [1, {"bb": 2, "a": 1}]
    assert isinstance(answers[2], KeyError)


async def test_users_behind_tokens_asked_together_are_read_once_and_still_checked(
    make_server: MakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await make_server(features=[])
    await small_city(server)
    ctx = server.ctx
    names = [f"ward00{n}" for n in range(1, 7)]
    tokens = [await server.login(name, DEMO_PASSWORD) for name in names]
    async with ctx.read() as session:
        ids = dict(
            (await session.execute(select(User.username, User.id).where(User.username.in_(names))))
            .tuples()
            .all()
        )
    # One signed out everywhere (its tokens are of an old version), one disabled; as after
    # a restart, nobody is cached.
    async with ctx.write() as w:
        await w.session.execute(
            update(User)
            .where(User.username == "ward002")
            .values(token_version=User.token_version + 1)
        )
        await w.session.execute(update(User).where(User.username == "ward003").values(active=False))
    for user_id in ids.values():
        ctx.principals.forget(user_id)
    statements = count_single_reads(server, monkeypatch)
    results = await asyncio.gather(
        *(principal_for_token(ctx, token) for token in tokens), return_exceptions=True
    )
    assert len(statements) == 1
    assert sorted(statements[0]["user_ids"]) == sorted(ids.values())
    codes = [
        result.code
        if isinstance(result, Unauthorized)
        else result.username
        if isinstance(result, Principal)
        else repr(result)
        for result in results
    ]
    assert codes == ["ward001", "token_revoked", "invalid_token", "ward004", "ward005", "ward006"]


def test_runs_of_signals_are_merged_in_order_and_read_back_whole() -> None:
    own = '{"n":"abc","s":'

    def message(n: int) -> str:
        return own + json.dumps({"topic": "unit:1", "type": "typing", "data": {"n": n}}) + "}"

    messages = [message(1), message(2), message(3), "E2{...events...}", message(4)]
    merged = merge_signals(messages, own)
    assert merged[1:] == ["E2{...events...}", message(4)]
    body = json.loads(merged[0])
    # A node of the previous release reads "s": the first signal, as before.
    assert body["s"]["data"] == {"n": 1}
    assert [more["data"] for more in body["m"]] == [{"n": 2}, {"n": 3}]
    assert merge_signals([message(1)], own) == [message(1)]


async def test_signals_published_together_all_reach_another_node() -> None:
    if not REDIS_URL:
        pytest.skip("needs Redis: set DIENHONG_TEST_REDIS_URL (CI does)")
    channel = f"dienhong:test:{uuid.uuid4().hex}"
    sender, receiver = RedisBroker(REDIS_URL, channel), RedisBroker(REDIS_URL, channel)
    got: list[Signal] = []
    everything = asyncio.Event()

    def heard(signal: Signal) -> None:
        got.append(signal)
        if len(got) == 300:
            everything.set()

    async def nothing(*_args: Any) -> None:
        return None

    await receiver.start(nothing, heard, nothing)
    await sender.start(nothing, lambda _signal: None, nothing)
    try:
        sent = [
            Signal(f"unit:{n % 7}", "presence.changed", {"user_id": n, "state": "online"})
            for n in range(300)
        ]
        for signal in sent:
            await sender.publish_signal(signal)
        await asyncio.wait_for(everything.wait(), 10)
        assert got == sent
    finally:
        await sender.stop()
        await receiver.stop()
