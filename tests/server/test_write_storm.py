"""A randomized write storm on two nodes over one PostgreSQL database and one Redis.

Posters post into channels they all share (so one channel is written from both nodes at
once), edit and repeat their own messages, units reply under a directive, and meanwhile
writes that run alone (a message retracted, a unit renamed, a directive acknowledged) cut
in. Message posts, edits and replies are partitioned writes: they hold the PostgreSQL
write lock shared and run side by side across the nodes. Afterwards: no request was
answered 5xx, every topic's seqs are gapless from 1, every message is stored once with one
``message.posted`` event, every edit and reply is in the log and in the audit chain, and
the chain verifies. The lock was seen held shared by two backends at once.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from server.app import create_app
from server.audit import verify_chain
from server.db import PG_WRITE_LOCK_KEY
from server.demo import DemoCity, seed_demo
from server.settings import Settings
from tests.conftest import DEMO_PASSWORD
from tests.harness import PG_URL, REDIS_URL, Templates, drop_database, fresh_database
from tests.server.test_nodes import Node, start_node, stop_node

# Requests per poster: a few seconds of storm on an idle machine, more on a loaded one.
REQUESTS_PER_POSTER = 20
POSTERS = 8
CHANNELS = 6
COMMUNES = 6
SAMPLE_GAP_SECS = 0.005


@dataclass
class Cluster:
    nodes: list[Node]
    city: DemoCity
    url: str
    tokens: dict[int, str]


@pytest.fixture
async def cluster(templates: Templates, tmp_path: Path) -> AsyncIterator[Cluster]:
    if not (PG_URL and REDIS_URL):
        pytest.skip(
            "the write storm needs PostgreSQL and Redis: set DIENHONG_TEST_DATABASE_URL "
            "and DIENHONG_TEST_REDIS_URL (CI does)"
        )
    data_dir = tmp_path / "data"
    url = await fresh_database(templates, "postgresql", data_dir)
    env = {key: value for key, value in os.environ.items() if not key.startswith("DIENHONG_")}
    env |= {
        "DIENHONG_DATA_DIR": str(data_dir),
        "DIENHONG_DATABASE_URL": url,
        "DIENHONG_REDIS_URL": REDIS_URL,
        "DIENHONG_REDIS_CHANNEL": f"dh:storm:{uuid.uuid4()}",
        "DIENHONG_LOG_JSON": "false",
        "DIENHONG_LOG_LEVEL": "WARNING",
    }
    app = create_app(Settings.from_env(env), features=[])
    ctx = app.state.ctx
    try:
        city, _ = await seed_demo(ctx, password=DEMO_PASSWORD, communes=COMMUNES, delegates=4)
        now = datetime.now(UTC)
        users = [city.admin_id, city.standing_id, *city.ward_user_ids, *city.delegate_ids]
        # Tokens signed with the data dir's key hold on both nodes.
        tokens = {user_id: ctx.tokens.issue(user_id, now)[0] for user_id in users}
    finally:
        await ctx.broker.stop()
        await ctx.db.dispose()
    nodes: list[Node] = []
    try:
        for name in ("a", "b"):
            nodes.append(await start_node(env, tmp_path / f"node-{name}.log"))
        yield Cluster(nodes, city, url, tokens)
    finally:
        for node in nodes:
            await stop_node(node)
        await drop_database(url)


@dataclass
class Tally:
    """Every answer of the storm, by kind of request."""

    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    refusals: Counter[tuple[str, str]] = field(default_factory=Counter)
    # A new post's answer: message id -> (channel, client_msg_id).
    posted: dict[int, tuple[int, str]] = field(default_factory=dict)
    new_answers: list[int] = field(default_factory=list)
    edits: Counter[int] = field(default_factory=Counter)
    retracted: set[int] = field(default_factory=set)
    replies: list[int] = field(default_factory=list)
    renames: int = 0

    def answer(self, kind: str, response: httpx.Response) -> dict[str, Any] | None:
        """Record a response; its JSON when 2xx, None when refused with a clear 4xx."""
        self.statuses[(kind, response.status_code)] += 1
        assert response.status_code < 500, f"{kind}: {response.status_code} {response.text}"
        body = response.json()
        if response.status_code >= 400:
            code = body["error"]["code"]
            assert isinstance(code, str) and code, response.text
            self.refusals[(kind, code)] += 1
            return None
        assert isinstance(body, dict)
        return body


class LockSampler:
    """Counts the backends holding the write lock, by mode, as often as it can."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.most_shared = 0
        self.overlapping_samples = 0
        self.samples = 0

    async def run(self, stop: asyncio.Event) -> None:
        engine = create_async_engine(self.url)
        query = text(
            "SELECT count(*) FILTER (WHERE mode = 'ShareLock') FROM pg_locks "
            "WHERE locktype = 'advisory' AND granted AND classid = :hi AND objid = :lo "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        params = {
            "hi": (PG_WRITE_LOCK_KEY >> 32) & 0xFFFFFFFF,
            "lo": PG_WRITE_LOCK_KEY & 0xFFFFFFFF,
        }
        try:
            async with engine.connect() as conn:
                while not stop.is_set():
                    shared = int((await conn.execute(query, params)).scalar_one())
                    await conn.rollback()
                    self.samples += 1
                    self.most_shared = max(self.most_shared, shared)
                    self.overlapping_samples += shared >= 2
                    await asyncio.sleep(SAMPLE_GAP_SECS)
        finally:
            await engine.dispose()


async def test_a_write_storm_on_two_nodes_keeps_seqs_messages_and_chain(
    cluster: Cluster,
) -> None:
    rng = random.Random(20261201)
    city, nodes, tokens = cluster.city, cluster.nodes, cluster.tokens
    posters = [*city.ward_user_ids[:COMMUNES], *city.delegate_ids][:POSTERS]
    clients = {
        (user_id, index): httpx.AsyncClient(
            base_url=node.url, timeout=60, headers={"Authorization": f"Bearer {tokens[user_id]}"}
        )
        for user_id in {*posters, city.admin_id, city.standing_id}
        for index, node in enumerate(nodes)
    }

    def client(user_id: int) -> httpx.AsyncClient:
        """The user's client on a node picked at random for each request."""
        return clients[(user_id, rng.randrange(len(nodes)))]

    tally = Tally()
    try:
        # Channels shared by every poster: each is written from both nodes at once.
        channel_ids = []
        for n in range(CHANNELS):
            response = await client(posters[0]).post(
                "/api/v1/channels",
                json={"name": f"Tổ công tác {n}", "kind": "group", "member_ids": posters},
            )
            assert response.status_code == 201, response.text
            channel_ids.append(int(response.json()["id"]))
        response = await client(city.standing_id).post(
            "/api/v1/directives",
            json={
                "title": "Báo cáo tình hình mưa lũ",
                "body": "Các phường báo cáo ngay số hộ phải di dời.",
                "urgency": "urgent",
                "targets": {"unit_ids": city.commune_unit_ids, "include_descendants": False},
                "ack_required": True,
            },
        )
        assert response.status_code == 201, response.text
        directive_id = int(response.json()["id"])
        wards = set(city.ward_user_ids)

        done = asyncio.Event()

        async def poster(user_id: int) -> None:
            mine: list[tuple[int, int]] = []  # (channel, message id) of own posts
            sent: list[tuple[int, str, str]] = []  # (channel, client_msg_id, body)
            for n in range(1, REQUESTS_PER_POSTER + 1):
                roll = rng.random()
                if roll < 0.55 or not mine:
                    channel_id = rng.choice(channel_ids)
                    client_msg_id = f"{user_id}-{n}-{uuid.uuid4().hex[:8]}"
                    body = f"Tin số {n} của người dùng {user_id}"
                    sent.append((channel_id, client_msg_id, body))
                    answer = tally.answer(
                        "post",
                        await client(user_id).post(
                            f"/api/v1/channels/{channel_id}/messages",
                            json={"body": body, "client_msg_id": client_msg_id},
                        ),
                    )
                    if answer is not None:
                        message_id = int(answer["id"])
                        tally.posted[message_id] = (channel_id, client_msg_id)
                        tally.new_answers.append(message_id)
                        mine.append((channel_id, message_id))
                elif roll < 0.65:
                    # The same post again (a client that did not see the answer).
                    channel_id, client_msg_id, body = rng.choice(sent)
                    response = await client(user_id).post(
                        f"/api/v1/channels/{channel_id}/messages",
                        json={"body": body, "client_msg_id": client_msg_id},
                    )
                    answer = tally.answer("repeat", response)
                    if answer is not None:
                        assert response.status_code in (200, 201), response.text
                        if response.status_code == 201:
                            # The first try was refused (busy): this one stored it.
                            tally.posted[int(answer["id"])] = (channel_id, client_msg_id)
                            tally.new_answers.append(int(answer["id"]))
                            mine.append((channel_id, int(answer["id"])))
                        else:
                            assert tally.posted[int(answer["id"])] == (channel_id, client_msg_id)
                elif roll < 0.85:
                    channel_id, message_id = rng.choice(mine)
                    answer = tally.answer(
                        "edit",
                        await client(user_id).patch(
                            f"/api/v1/channels/{channel_id}/messages/{message_id}",
                            json={"body": f"Sửa lần {n}"},
                        ),
                    )
                    if answer is not None:
                        tally.edits[message_id] += 1
                elif roll < 0.93 and user_id in wards:
                    answer = tally.answer(
                        "reply",
                        await client(user_id).post(
                            f"/api/v1/directives/{directive_id}/replies",
                            json={"body": f"Phường báo cáo lần {n}"},
                        ),
                    )
                    if answer is not None:
                        tally.replies.append(int(answer["id"]))
                elif roll < 0.96:
                    # A write that runs alone: retract one of the own messages.
                    channel_id, message_id = rng.choice(mine)
                    answer = tally.answer(
                        "retract",
                        await client(user_id).delete(
                            f"/api/v1/channels/{channel_id}/messages/{message_id}"
                        ),
                    )
                    if answer is not None:
                        tally.retracted.add(message_id)
                elif user_id in wards:
                    tally.answer(
                        "ack",
                        await client(user_id).post(
                            f"/api/v1/directives/{directive_id}/ack", json={}
                        ),
                    )

        async def admin() -> None:
            """Audited writes that run alone, meanwhile: a unit renamed again and again."""
            n = 0
            while not done.is_set():
                n += 1
                unit_id = rng.choice(city.commune_unit_ids)
                answer = tally.answer(
                    "rename",
                    await client(city.admin_id).patch(
                        f"/api/v1/units/{unit_id}", json={"name": f"Phường {n}"}
                    ),
                )
                tally.renames += answer is not None
                await asyncio.sleep(0.05)

        sampler = LockSampler(cluster.url)
        stop = asyncio.Event()
        sampling = asyncio.create_task(sampler.run(stop))
        try:
            renaming = asyncio.create_task(admin())
            await asyncio.gather(*(poster(user_id) for user_id in posters))
            done.set()
            await renaming
        finally:
            stop.set()
            await sampling
    finally:
        for http in clients.values():
            await http.aclose()

    # Enough of everything happened for the checks below to mean something.
    assert len(tally.new_answers) >= 40, tally.statuses
    assert sum(tally.edits.values()) >= 5, tally.statuses
    assert tally.replies, tally.statuses
    assert tally.renames >= 2, tally.statuses
    # Refusals are only the ones the storm asks for (an edit of a retracted message...).
    allowed = {"busy", "message_retracted"}
    assert {code for _, code in tally.refusals} <= allowed, tally.refusals
    # Partitioned writes ran side by side: the lock was held shared by 2+ backends at once.
    assert sampler.most_shared >= 2, (sampler.samples, sampler.most_shared)

    engine = create_async_engine(cluster.url)
    try:
        async with AsyncSession(engine) as session:
            await _check_log_and_rows(session, tally, channel_ids, city, directive_id)
            report = await verify_chain(session)
            assert report.ok, report
    finally:
        await engine.dispose()


async def _check_log_and_rows(
    session: AsyncSession,
    tally: Tally,
    channel_ids: list[int],
    city: DemoCity,
    directive_id: int,
) -> None:
    # Every topic: seqs 1..n without a gap, the counter at n.
    topics = (
        await session.execute(
            text(
                "SELECT t.name, t.seq, count(e.seq), coalesce(min(e.seq), 0), "
                "coalesce(max(e.seq), 0) FROM topics t LEFT JOIN events e ON e.topic = t.name "
                "GROUP BY t.name, t.seq"
            )
        )
    ).all()
    assert topics
    for name, seq, count, low, high in topics:
        assert (count, high) == (seq, seq), f"{name}: counter {seq}, {count} events up to {high}"
        assert count == 0 or low == 1, f"{name} starts at {low}"

    # Every message stored once, answered new once, with one message.posted event.
    assert len(tally.new_answers) == len(set(tally.new_answers))
    ids = ",".join(str(c) for c in channel_ids)
    stored = {
        int(row.id): row
        for row in (
            await session.execute(
                text(
                    "SELECT id, channel_id, client_msg_id, seq, version, state FROM messages "
                    f"WHERE channel_id IN ({ids})"
                )
            )
        ).all()
    }
    assert set(stored) == set(tally.new_answers)
    for message_id, (channel_id, client_msg_id) in tally.posted.items():
        row = stored[message_id]
        assert (row.channel_id, row.client_msg_id) == (channel_id, client_msg_id)
        # Its versions: the post, each edit answered, and the retraction.
        assert row.version == 1 + tally.edits[message_id] + (message_id in tally.retracted)
    posted_events = (
        await session.execute(
            text(
                "SELECT topic, seq, (data->'message'->>'id')::int FROM events "
                "WHERE type = 'message.posted'"
            )
        )
    ).all()
    by_message = Counter(message_id for _, _, message_id in posted_events)
    assert set(by_message) == set(stored)
    assert set(by_message.values()) == {1}
    for topic, seq, message_id in posted_events:
        assert (topic, seq) == (f"channel:{stored[message_id].channel_id}", stored[message_id].seq)
    edited = (
        await session.execute(text("SELECT count(*) FROM events WHERE type = 'message.edited'"))
    ).scalar_one()
    assert edited == sum(tally.edits.values())

    # Every edit and reply answered is in the audit chain, and every reply in the log.
    rows = await session.execute(
        text(
            "SELECT action, count(*) FROM audit_log WHERE action IN "
            "('message.edit', 'directive.reply') GROUP BY action"
        )
    )
    audited: dict[str, int] = {str(action): int(count) for action, count in rows.all()}
    assert audited.get("message.edit", 0) == sum(tally.edits.values())
    assert audited.get("directive.reply", 0) == len(tally.replies)
    replies = (
        await session.execute(
            text("SELECT count(*) FROM directive_replies WHERE directive_id = :d"),
            {"d": directive_id},
        )
    ).scalar_one()
    assert replies == len(tally.replies)
    to_sender = (
        await session.execute(
            text("SELECT count(*) FROM events WHERE topic = :t AND type = 'directive.reply'"),
            {"t": f"user:{city.standing_id}"},
        )
    ).scalar_one()
    assert to_sender == len(tally.replies)
