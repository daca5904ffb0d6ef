"""Posts and edits of channel messages are group-committed: what queued meanwhile is written
in one transaction, each request answered on its own, a refused one failing alone.

The test holds the write path while the requests queue up, so that they land in one batch
together with the bad ones.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from sqlalchemy import select

from messaging.models import Channel, Message
from messaging.runtime import messaging_runtime
from server.audit import verify_chain
from server.demo import DemoCity, seed_demo
from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.harness import RunningServer, eventually
from tests.messaging.support import audit_actions, events_of


async def _unit_channels(server: RunningServer, user_ids: list[int]) -> dict[int, int]:
    """Each user's unit channel id."""
    from server.org.models import User

    async with server.ctx.read() as session:
        rows = (
            await session.execute(
                select(User.id, Channel.id)
                .join(Channel, Channel.unit_id == User.unit_id)
                .where(User.id.in_(user_ids))
            )
        ).all()
    return {int(uid): int(cid) for uid, cid in rows}


async def test_posts_and_edits_in_one_batch_fail_alone(
    server: RunningServer, city: DemoCity
) -> None:
    clerks = city.ward_user_ids[:6]
    channel_of = await _unit_channels(server, clerks)
    now = server.ctx.clock.now()
    tokens = {uid: server.ctx.tokens.issue(uid, now)[0] for uid in clerks}
    runtime = messaging_runtime(server.ctx)
    assert runtime is not None
    writer = runtime.channels
    a, b, c, d = clerks[:4]

    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:

        async def send(method: str, uid: int, path: str, body: dict[str, Any]) -> httpx.Response:
            # json.dumps escapes a lone surrogate as \\ud800 (httpx would fail to encode it).
            return await http.request(
                method,
                path,
                content=json.dumps(body),
                headers={
                    "Authorization": f"Bearer {tokens[uid]}",
                    "Content-Type": "application/json",
                },
            )

        def post(uid: int, body: dict[str, Any], channel: int | None = None) -> Any:
            path = f"/api/v1/channels/{channel or channel_of[uid]}/messages"
            return asyncio.ensure_future(send("POST", uid, path, body))

        first = (
            await send(
                "POST",
                a,
                f"/api/v1/channels/{channel_of[a]}/messages",
                {"body": "Bản đầu", "client_msg_id": "a-0"},
            )
        ).json()
        edit_path = f"/api/v1/channels/{channel_of[a]}/messages/{first['id']}"
        gone = (
            await send(
                "POST",
                a,
                f"/api/v1/channels/{channel_of[a]}/messages",
                {"body": "Sẽ rút lại", "client_msg_id": "a-gone"},
            )
        ).json()
        gone_path = f"/api/v1/channels/{channel_of[a]}/messages/{gone['id']}"
        assert (await send("POST", a, f"{gone_path}/retract", {})).status_code == 200
        async with server.ctx.write():
            good = [
                post(uid, {"body": f"Tin {n} của {uid}", "client_msg_id": f"{uid}-{n}"})
                for n in range(3)
                for uid in clerks
            ]
            edit = asyncio.ensure_future(send("PATCH", a, edit_path, {"body": "Bản sửa"}))
            # A retracted message cannot be edited: refused after the edit above was
            # written in the same batch, whose event must stay.
            late = asyncio.ensure_future(send("PATCH", a, gone_path, {"body": "Quá muộn"}))
            twice = [post(b, {"body": "Một lần", "client_msg_id": "b-twice"}) for _ in range(2)]
            reused = [post(c, {"body": f"Khác {n}", "client_msg_id": "c-reused"}) for n in range(2)]
            bad = [
                # Another ward's channel.
                post(d, {"body": "Nhầm kênh", "client_msg_id": "d-wrong"}, channel_of[a]),
                # A channel that does not exist.
                post(d, {"body": "Không có", "client_msg_id": "d-none"}, 2**31 - 1),
                # A reply to a message that does not exist.
                post(d, {"body": "Trả lời", "client_msg_id": "d-reply", "reply_to": 2**31 - 1}),
                # Someone else's message, in a channel the editor is not in.
                asyncio.ensure_future(send("PATCH", b, edit_path, {"body": "Không phải tôi"})),
            ]
            # Refused before the queue: never waits for the batch.
            surrogate = await send(
                "POST",
                d,
                f"/api/v1/channels/{channel_of[d]}/messages",
                {"body": "\ud800", "client_msg_id": "d-surrogate"},
            )
            await eventually(
                lambda: writer.waiting >= len(good) + 2 + 4 + len(bad), "every post queued"
            )
        answers = await asyncio.gather(*good)
        edited = await edit
        too_late = await late
        repeated = await asyncio.gather(*twice)
        conflicting = await asyncio.gather(*reused)
        refused = await asyncio.gather(*bad)

    assert [r.status_code for r in answers] == [201] * len(good), [r.text for r in answers]
    assert edited.status_code == 200, edited.text
    assert edited.json()["body"] == "Bản sửa" and edited.json()["version"] == 2
    assert too_late.status_code == 409, too_late.text
    edits = await events_of(server, f"channel:{channel_of[a]}", "message.edited")
    assert [e.data["message"]["body"] for e in edits] == ["Bản sửa"]
    assert sorted(r.status_code for r in repeated) == [200, 201]
    assert repeated[0].json()["id"] == repeated[1].json()["id"]
    assert sorted(r.status_code for r in conflicting) == [201, 409]
    assert [r.json()["error"]["code"] for r in refused] == [
        "not_a_member",
        "channel_not_found",
        "unknown_reply_to",
        "not_a_member",
    ]
    assert surrogate.status_code == 400
    assert surrogate.json()["error"]["code"] == "invalid_json"

    async with server.ctx.read() as session:
        stored = (await session.execute(select(Message).order_by(Message.id))).scalars().all()
    # Nothing of a refused request is stored.
    assert not {m.client_msg_id for m in stored} & {"d-wrong", "d-none", "d-reply", "d-surrogate"}
    # Gapless seqs per channel, each message at the seq of its posted event.
    for uid in clerks:
        topic = f"channel:{channel_of[uid]}"
        events = await events_of(server, topic)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        posted = {e.data["message"]["id"]: e.seq for e in events if e.type == "message.posted"}
        mine = [m for m in stored if m.channel_id == channel_of[uid]]
        assert {m.id: m.seq for m in mine} == posted
        assert len(mine) == 3 + {a: 2, b: 1, c: 1}.get(uid, 0)
    # Answers carry the stored seq.
    by_id = {m.id: m for m in stored}
    for answer in answers:
        assert by_id[answer.json()["id"]].seq == answer.json()["seq"]
    assert len(await audit_actions(server, "message.edit")) == 1
    async with server.ctx.read() as session:
        assert (await verify_chain(session)).ok


async def test_too_many_waiting_posts_are_refused(make_server: MakeServer) -> None:
    """Too many waiting posts are refused with 429 busy; nothing of them is stored."""
    # One post per batch: the first is taken alone into the held batch.
    server = await make_server(message_queue_limit=5, message_batch=1)
    city, _ = await seed_demo(server.ctx, password=DEMO_PASSWORD, communes=2, delegates=2)
    clerk = city.ward_user_ids[0]
    channel = (await _unit_channels(server, [clerk]))[clerk]
    token = server.ctx.tokens.issue(clerk, server.ctx.clock.now())[0]
    runtime = messaging_runtime(server.ctx)
    assert runtime is not None
    writer = runtime.channels
    limit = server.settings.message_queue_limit
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:

        def post(n: int) -> Any:
            return asyncio.ensure_future(
                http.post(
                    f"/api/v1/channels/{channel}/messages",
                    json={"body": f"Tin {n}", "client_msg_id": f"busy-{n}"},
                    headers={"Authorization": f"Bearer {token}"},
                )
            )

        async with server.ctx.write():
            # The queue fills to its limit (and the writer may take one post into the held
            # batch, making room for one more); the rest are refused at once.
            sent = [post(n) for n in range(3 * limit)]
            await eventually(lambda: writer.waiting >= limit, "the queue full")
            await eventually(lambda: sum(t.done() for t in sent) >= 1, "a refusal answered")
        answers = await asyncio.gather(*sent)
    codes = [r.status_code for r in answers]
    assert set(codes) == {201, 429}, [r.text for r in answers]
    busy = [n for n, r in enumerate(answers) if r.status_code == 429]
    assert all(answers[n].json()["error"]["code"] == "busy" for n in busy)
    async with server.ctx.read() as session:
        ids = (
            (
                await session.execute(
                    select(Message.client_msg_id).where(Message.channel_id == channel)
                )
            )
            .scalars()
            .all()
        )
    assert sorted(ids) == sorted(f"busy-{n}" for n in range(3 * limit) if n not in busy)


async def test_replies_in_one_batch_fail_alone(server: RunningServer, city: DemoCity) -> None:
    from tests.messaging.support import directive_body, issue, token

    standing = await token(server, "standing")
    wards = city.commune_unit_ids[:4]
    issued = await issue(server, standing, directive_body(wards))
    path = f"/api/v1/directives/{issued['id']}/replies"
    now = server.ctx.clock.now()
    clerks = [server.ctx.tokens.issue(uid, now)[0] for uid in city.ward_user_ids[:4]]
    runtime = messaging_runtime(server.ctx)
    assert runtime is not None
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:

        def reply(who: str, body: dict[str, Any]) -> Any:
            return asyncio.ensure_future(
                http.post(path, json=body, headers={"Authorization": f"Bearer {who}"})
            )

        async with server.ctx.write():
            good = [reply(clerk, {"body": f"Báo cáo {n}"}) for n, clerk in enumerate(clerks)]
            # Another unit's thread.
            bad = reply(clerks[0], {"body": "Nhầm", "unit_id": wards[1]})
            await eventually(lambda: runtime.replies.waiting >= len(good) + 1, "every reply queued")
        answers = await asyncio.gather(*good)
        refused = await bad
    assert [r.status_code for r in answers] == [201] * len(good), [r.text for r in answers]
    assert refused.json()["error"]["code"] == "not_your_thread"
    assert len(await audit_actions(server, "directive.reply")) == len(good)
    async with server.ctx.read() as session:
        assert (await verify_chain(session)).ok
