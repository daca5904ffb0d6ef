"""Directives: issuing to the whole city, receipts and their roll-up, resume, CSV."""

from __future__ import annotations

import csv
import io

from sqlalchemy import select

from messaging.models import DirectiveRecipient
from server.demo import DemoCity
from server.org.models import User
from tests.harness import RunningServer, eventually
from tests.messaging.support import (
    audit_actions,
    directive_body,
    events_of,
    issue,
    token,
)


async def all_user_ids(server: RunningServer) -> list[int]:
    async with server.ctx.read() as session:
        return list(
            (await session.execute(select(User.id).where(User.active.is_(True)).order_by(User.id)))
            .scalars()
            .all()
        )


async def test_directive_to_root_reaches_every_user_once(
    server: RunningServer, city: DemoCity
) -> None:
    standing = await token(server, "standing")
    ward = await token(server, "ward001")
    async with server.socket(ward) as client:
        issued = await issue(
            server,
            standing,
            directive_body(
                [city.root_unit_id],
                targets={"unit_ids": [city.root_unit_id], "include_descendants": True},
            ),
        )
        event = await client.next_event("directive.issued")
        assert event["topic"] == f"user:{city.ward_user_ids[0]}"
        assert event["data"]["directive"]["id"] == issued["id"]
        assert event["data"]["directive"]["title"].startswith("Khẩn cấp")
        await client.send(op="received", topic=event["topic"], seq=event["seq"])

    everyone = [uid for uid in await all_user_ids(server) if uid != city.standing_id]
    assert issued["recipient_count"] == len(everyone)
    assert issued["left_out"] == []
    for user_id in [*everyone, city.standing_id]:
        got = await events_of(server, f"user:{user_id}", "directive.issued")
        assert len(got) == (0 if user_id == city.standing_id else 1), user_id
    async with server.ctx.read() as session:
        rows = (
            (
                await session.execute(
                    select(DirectiveRecipient).where(
                        DirectiveRecipient.directive_id == issued["id"]
                    )
                )
            )
            .scalars()
            .all()
        )
    assert sorted(r.user_id for r in rows) == everyone

    async def delivered() -> bool:
        async with server.http(standing) as http:
            summary = (await http.get(f"/api/v1/directives/{issued['id']}/receipts")).json()
        return bool(summary["summary"]["delivered"] == 1)

    await eventually(delivered)
    assert len(await audit_actions(server, "directive.issue")) == 1


async def test_rollup_after_reads_and_acks(server: RunningServer, city: DemoCity) -> None:
    standing = await token(server, "standing")
    units = city.commune_unit_ids
    issued = await issue(server, standing, directive_body(units))
    directive_id = issued["id"]
    assert issued["recipient_count"] == 6
    w1, w2, w3 = [await token(server, f"ward00{i}") for i in (1, 2, 3)]
    async with server.http(w1) as http:
        assert (await http.post(f"/api/v1/directives/{directive_id}/read")).status_code == 200
    async with server.http(w2) as http:
        first = await http.post(
            f"/api/v1/directives/{directive_id}/ack", json={"note": "Đã triển khai"}
        )
        assert first.status_code == 200
        assert first.json()["state"] == "acknowledged"
        again = await http.post(f"/api/v1/directives/{directive_id}/ack", json={"note": "khác"})
        assert again.status_code == 200
        assert again.json() == first.json()  # repeated acks change nothing
        read_after = await http.post(f"/api/v1/directives/{directive_id}/read")
        assert read_after.json()["read_at"] == first.json()["read_at"]
    async with server.http(w3) as http:
        await http.post(f"/api/v1/directives/{directive_id}/read")
        await http.post(f"/api/v1/directives/{directive_id}/ack", json={})
    assert len(await audit_actions(server, "directive.ack")) == 2
    assert len(await audit_actions(server, "directive.read")) == 2  # w1, w3 (w2 read by ack)

    async with server.http(standing) as http:
        report = (await http.get(f"/api/v1/directives/{directive_id}/receipts")).json()
    assert report["summary"] == {
        "recipients": 6,
        "delivered": 3,
        "read": 3,
        "acknowledged": 2,
        "overdue": 0,
    }
    by_unit = {u["unit_id"]: u for u in report["units"]}
    assert set(by_unit) == set(units)
    assert by_unit[units[0]] | {"name": ""} == {
        "unit_id": units[0],
        "name": "",
        "recipients": 1,
        "delivered": 1,
        "read": 1,
        "acknowledged": 0,
    }
    assert by_unit[units[1]]["acknowledged"] == 1
    assert by_unit[units[5]]["read"] == 0
    noted = [u for u in report["users"] if u["user_id"] == city.ward_user_ids[1]]
    assert noted[0]["note"] == "Đã triển khai"

    async with server.http(standing) as http:
        response = await http.get(f"/api/v1/directives/{directive_id}/receipts.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert len(rows) == 6
    assert {r["Tên đăng nhập"] for r in rows} == {f"ward00{i}" for i in range(1, 7)}
    assert [r["Ghi chú xác nhận"] for r in rows if r["Tên đăng nhập"] == "ward002"] == [
        "Đã triển khai"
    ]

    async with server.http(w1) as http:
        inbox = (await http.get("/api/v1/directives", params={"box": "inbox"})).json()
    assert [d["id"] for d in inbox["directives"]] == [directive_id]
    assert inbox["directives"][0]["receipt"]["state"] == "read"
    async with server.http(standing) as http:
        sent = (await http.get("/api/v1/directives", params={"box": "sent"})).json()
    assert sent["directives"][0]["progress"]["acknowledged"] == 2


async def test_reconnecting_client_gets_missed_directive_on_resume(
    server: RunningServer, city: DemoCity
) -> None:
    standing = await token(server, "standing")
    ward = await token(server, "ward002")
    topic = f"user:{city.ward_user_ids[1]}"
    async with server.socket(ward) as client:
        last_seen = client.ready["topics"][topic]
    issued = await issue(server, standing, directive_body([city.commune_unit_ids[1]]))
    async with server.socket(ward) as client:
        frames = await client.subscribe({topic: last_seen})
        events = [f for f in frames if f.get("op") == "event"]
        assert [e["type"] for e in events] == ["directive.issued"]
        assert events[0]["data"]["directive"]["id"] == issued["id"]
        await client.send(op="received", topic=topic, seq=events[0]["seq"])

        async def delivered() -> bool:
            async with server.ctx.read() as session:
                row = (
                    await session.execute(
                        select(DirectiveRecipient).where(
                            DirectiveRecipient.directive_id == issued["id"]
                        )
                    )
                ).scalar_one()
            return row.delivered_at is not None

        await eventually(delivered)


async def test_sender_gets_coalesced_receipt_progress(
    make_server: object, city_factory: object = None
) -> None:
    """With a long coalescing interval, many changes make one event, not one each."""
    from server.demo import seed_demo
    from tests.conftest import DEMO_PASSWORD

    server = await make_server(receipt_progress_secs=3600)  # type: ignore[operator]
    city, _ = await seed_demo(server.ctx, password=DEMO_PASSWORD, communes=6, delegates=9)
    standing = await token(server, "standing")
    issued = await issue(server, standing, directive_body(city.commune_unit_ids))
    async with server.socket(standing) as sender:
        async with server.http(await token(server, "ward001")) as http:
            await http.post(f"/api/v1/directives/{issued['id']}/ack", json={})
        progress = await sender.next_event("directive.receipts")
        assert progress["data"]["directive_id"] == issued["id"]
        assert progress["data"]["summary"]["acknowledged"] >= 1
        for i in range(2, 7):
            async with server.http(await token(server, f"ward00{i}")) as http:
                await http.post(f"/api/v1/directives/{issued['id']}/ack", json={})
    topic = f"user:{city.standing_id}"
    assert len(await events_of(server, topic, "directive.receipts")) == 1


async def test_receipts_roll_up_events_reach_full(server: RunningServer, city: DemoCity) -> None:
    standing = await token(server, "standing")
    issued = await issue(server, standing, directive_body(city.commune_unit_ids[:2]))
    async with server.socket(standing) as sender:
        for name in ("ward001", "ward002"):
            async with server.http(await token(server, name)) as http:
                await http.post(f"/api/v1/directives/{issued['id']}/ack", json={})
        while True:
            progress = await sender.next_event("directive.receipts")
            if progress["data"]["summary"]["acknowledged"] == 2:
                break
    assert progress["data"]["summary"]["recipients"] == 2


async def test_simultaneous_acks_share_a_transaction_but_not_their_answers(
    server: RunningServer, city: DemoCity
) -> None:
    import asyncio

    standing = await token(server, "standing")
    issued = await issue(server, standing, directive_body(city.commune_unit_ids))
    directive_id = issued["id"]
    names = [f"ward00{i}" for i in range(1, 7)]
    tokens = {name: await token(server, name) for name in [*names, "delegate001"]}

    async def ack(name: str) -> tuple[int, dict[str, object]]:
        async with server.http(tokens[name]) as http:
            response = await http.post(
                f"/api/v1/directives/{directive_id}/ack", json={"note": name}
            )
        return response.status_code, response.json()

    answers = await asyncio.gather(*(ack(n) for n in [*names, "ward001", "delegate001"]))
    assert [status for status, _ in answers] == [200] * 7 + [404]
    assert answers[-1][1]["error"]["code"] == "directive_not_found"  # type: ignore[index]
    assert [body["note"] for _, body in answers[:6]] == names
    assert answers[6][1] == answers[0][1]  # the same receipt, acknowledged once
    assert len(await audit_actions(server, "directive.ack")) == 6
    async with server.http(standing) as http:
        report = (await http.get(f"/api/v1/directives/{directive_id}/receipts")).json()
    assert report["summary"]["acknowledged"] == 6
