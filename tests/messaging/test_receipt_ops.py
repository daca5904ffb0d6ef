"""Reads and acknowledgements over ``/ws`` (the ops ``read`` and ``ack``): answered on the
socket by ``ref``, judged and recorded exactly as the HTTP routes do, refused with the
catalogue's codes and nothing stored, limited by the user's frame budget."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sqlalchemy import func, select

from messaging.models import DirectiveRecipient
from server.audit import AuditRecord
from server.demo import DemoCity
from server.errors import ERROR_CATALOGUE
from server.realtime.models import EventRecord
from tests.harness import RunningServer, WsClient, eventually
from tests.messaging.support import (
    audit_actions,
    directive_body,
    events_of,
    issue,
    token,
)


async def answer_to(ws: WsClient, ref: Any, timeout: float = 10.0) -> dict[str, Any]:
    """The answer frame carrying ``ref``, skipping events and other frames."""
    while True:
        message = await ws.recv(timeout)
        if message.get("op") in ("ok", "error") and message.get("ref") == ref:
            return message


async def stored(server: RunningServer, directive_id: int) -> dict[str, Any]:
    """What a refusal must leave as it was: receipts, audit chain, event log."""
    async with server.ctx.read() as session:
        rows = (
            (
                await session.execute(
                    select(DirectiveRecipient)
                    .where(DirectiveRecipient.directive_id == directive_id)
                    .order_by(DirectiveRecipient.user_id)
                )
            )
            .scalars()
            .all()
        )
        audit = await session.execute(select(func.count()).select_from(AuditRecord))
        events = await session.execute(select(func.count()).select_from(EventRecord))
        return {
            "receipts": [
                (r.user_id, r.delivered_at, r.read_at, r.acknowledged_at, r.ack_note) for r in rows
            ],
            "audit": audit.scalar_one(),
            "events": events.scalar_one(),
        }


async def _issued(server: RunningServer, city: DemoCity) -> int:
    standing = await token(server, "standing")
    issued = await issue(server, standing, directive_body(city.commune_unit_ids[:3]))
    directive_id: int = issued["id"]
    return directive_id


async def test_read_and_ack_over_the_socket(server: RunningServer, city: DemoCity) -> None:
    directive_id = await _issued(server, city)
    standing = await token(server, "standing")
    async with (
        server.socket(standing) as sender,
        server.socket(await token(server, "ward001")) as ws,
    ):
        await ws.send(op="read", directive_id=directive_id, ref="r-1")
        read = await answer_to(ws, "r-1")
        assert read["op"] == "ok", read
        assert read["data"]["read_at"] is not None
        assert read["data"]["acknowledged_at"] is None
        await ws.send(op="ack", directive_id=directive_id, note="Đã triển khai", ref=7)
        acked = await answer_to(ws, 7)
        assert acked["op"] == "ok", acked
        assert acked["data"]["acknowledged_at"] is not None
        assert acked["data"]["note"] == "Đã triển khai"
        assert acked["data"]["user_id"] == city.ward_user_ids[0]
        # The sender's roll-up follows, as for an acknowledgement over HTTP.
        while True:
            progress = await sender.next_event("directive.receipts", timeout=10)
            if progress["data"]["summary"]["acknowledged"] == 1:
                break
        assert progress["data"]["directive_id"] == directive_id
    async with server.ctx.read() as session:
        row = (
            await session.execute(
                select(DirectiveRecipient).where(
                    DirectiveRecipient.directive_id == directive_id,
                    DirectiveRecipient.user_id == city.ward_user_ids[0],
                )
            )
        ).scalar_one()
    assert row.acknowledged_at is not None and row.ack_note == "Đã triển khai"
    assert row.read_at is not None and row.read_at <= row.acknowledged_at


async def test_a_second_ack_changes_nothing(server: RunningServer, city: DemoCity) -> None:
    directive_id = await _issued(server, city)
    async with server.socket(await token(server, "ward002")) as ws:
        # Both in flight at once (likely one batch), then once more after.
        await ws.send(op="ack", directive_id=directive_id, note="một", ref="a")
        await ws.send(op="ack", directive_id=directive_id, note="hai", ref="b")
        first, second = await answer_to(ws, "a"), await answer_to(ws, "b")

        async def rolled_up() -> bool:
            events = await events_of(server, f"user:{city.standing_id}", "directive.receipts")
            return bool(events) and events[-1].data["summary"]["acknowledged"] == 1

        await eventually(rolled_up)
        before = await stored(server, directive_id)
        await ws.send(op="ack", directive_id=directive_id, note="ba", ref="c")
        third = await answer_to(ws, "c")
    assert first["op"] == second["op"] == third["op"] == "ok"
    assert first["data"] == second["data"] == third["data"]
    assert first["data"]["note"] == "một"
    assert await stored(server, directive_id) == before
    acks = [
        r
        for r in await audit_actions(server, "directive.ack")
        if r.subject == f"directive:{directive_id}"
    ]
    assert len(acks) == 1


async def test_refusals_answer_a_code_and_store_nothing(
    server: RunningServer, city: DemoCity
) -> None:
    directive_id = await _issued(server, city)
    limit = server.ctx.settings.max_message_bytes
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("ward001", {"op": "ack", "directive_id": 2**31 - 1}, "directive_not_found"),
        ("ward001", {"op": "read", "directive_id": 0}, "directive_not_found"),
        ("ward001", {"op": "ack", "directive_id": 10**20}, "invalid_id"),
        # The sender is no recipient; a ward outside the targets does not see it at all.
        ("standing", {"op": "ack", "directive_id": directive_id}, "not_a_recipient"),
        ("ward006", {"op": "ack", "directive_id": directive_id}, "directive_not_found"),
        ("ward001", {"op": "ack", "directive_id": str(directive_id)}, "bad_request"),
        ("ward001", {"op": "ack", "directive_id": True}, "bad_request"),
        ("ward001", {"op": "ack"}, "bad_request"),
        ("ward001", {"op": "read", "directive_id": directive_id, "note": "x"}, "bad_request"),
        ("ward001", {"op": "ack", "directive_id": directive_id, "user_id": 1}, "bad_request"),
        ("ward001", {"op": "ack", "directive_id": directive_id, "note": 5}, "bad_request"),
        (
            "ward001",
            {"op": "ack", "directive_id": directive_id, "note": "x" * (limit + 1)},
            "note_too_large",
        ),
        ("ward001", {"op": "ack", "directive_id": directive_id, "note": "\ud800"}, "invalid_text"),
    ]
    sockets = {name: await token(server, name) for name in ("ward001", "standing", "ward006")}
    before = await stored(server, directive_id)
    for name, frame, code in cases:
        async with server.socket(sockets[name]) as ws:
            # json.dumps escapes a lone surrogate as \\ud800, as a browser would send it.
            await ws.ws.send(json.dumps({**frame, "ref": "x"}))
            answer = await answer_to(ws, "x")
            assert answer["op"] == "error", (frame, answer)
            assert answer["code"] == code, (frame, answer)
            assert code in ERROR_CATALOGUE
            assert answer["message"]
            # A refused op is an answer, not a broken protocol: the socket goes on.
            await ws.send(op="ping")
            assert (await answer_or_pong(ws))["op"] == "pong"
    # A refusal of access leaves the record a refused HTTP request leaves; nothing else.
    refusals = await eventually_refused(server, 1)
    assert [(r.actor_id, r.subject, r.details["code"]) for r in refusals] == [
        (city.standing_id, "ws ack", "not_a_recipient")
    ]
    assert await stored(server, directive_id) == {**before, "audit": before["audit"] + 1}


async def eventually_refused(server: RunningServer, count: int) -> list[AuditRecord]:
    async def written() -> bool:
        return len(await audit_actions(server, "access.refused")) >= count

    await eventually(written)
    return await audit_actions(server, "access.refused")


async def test_a_bad_ref_is_refused_without_echo(server: RunningServer, city: DemoCity) -> None:
    directive_id = await _issued(server, city)
    ward = await token(server, "ward001")
    before = await stored(server, directive_id)
    async with server.socket(ward) as ws:
        for ref in ("r" * 65, 1.5, [1], {"a": 1}, True):
            await ws.send(op="ack", directive_id=directive_id, ref=ref)
            answer = await answer_to(ws, None)
            assert answer["op"] == "error" and answer["code"] == "bad_request", (ref, answer)
    assert await stored(server, directive_id) == before


async def test_audit_records_are_those_of_the_http_route(
    server: RunningServer, city: DemoCity
) -> None:
    directive_id = await _issued(server, city)
    note = "Đã nhận, triển khai ngay"
    async with server.http(await token(server, "ward001")) as http:
        assert (await http.post(f"/api/v1/directives/{directive_id}/read")).status_code == 200
        response = await http.post(f"/api/v1/directives/{directive_id}/ack", json={"note": note})
        assert response.status_code == 200
        over_http = response.json()
    async with server.socket(await token(server, "ward002")) as ws:
        await ws.send(op="read", directive_id=directive_id, ref=1)
        assert (await answer_to(ws, 1))["op"] == "ok"
        await ws.send(op="ack", directive_id=directive_id, note=note, ref=2)
        over_socket = (await answer_to(ws, 2))["data"]
    assert set(over_socket) == set(over_http)
    assert over_socket["state"] == over_http["state"] == "acknowledged"
    for action in ("directive.read", "directive.ack"):
        records = {
            r.actor_id: r
            for r in await audit_actions(server, action)
            if r.subject == f"directive:{directive_id}"
        }
        http_record = records[city.ward_user_ids[0]]
        socket_record = records[city.ward_user_ids[1]]
        assert (http_record.action, http_record.subject, http_record.details) == (
            socket_record.action,
            socket_record.subject,
            socket_record.details,
        )
    report = await server.ctx.db.read_row(
        select(func.count()).where(
            DirectiveRecipient.directive_id == directive_id,
            DirectiveRecipient.acknowledged_at.is_not(None),
        ),
        {},
    )
    assert report is not None and report[0] == 2


async def test_ops_count_against_the_users_frame_budget(make_server: Any) -> None:
    from server.demo import seed_demo
    from tests.conftest import DEMO_PASSWORD

    server = await make_server(ws_rate_per_sec=0.01, ws_rate_burst=4)
    city, _ = await seed_demo(server.ctx, password=DEMO_PASSWORD, communes=3, delegates=3)
    directive_id = await _issued(server, city)
    async with server.socket(await token(server, "ward001")) as ws:
        for ref in range(10):
            await ws.send(op="read", directive_id=directive_id, ref=ref)

        async def closed() -> bool:
            try:
                await ws.recv(timeout=5)
            except Exception:
                return True
            return False

        await eventually(closed)
        assert ws.ws.close_code == 4429


async def test_the_ws_description_lists_the_ops(server: RunningServer) -> None:
    async with server.http() as http:
        document = (await http.get("/api/v1/ws/events.json")).json()
    ops = document["ops"]
    assert set(ops) >= {"ack", "read"}
    assert ops["ack"]["required"] == ["op", "directive_id"]
    assert set(ops["ack"]["properties"]) == {"op", "ref", "directive_id", "note"}
    assert ops["read"]["additionalProperties"] is False


async def test_answers_come_back_while_the_batch_is_written(
    server: RunningServer, city: DemoCity
) -> None:
    """The socket goes on reading while its ops wait for their group commit."""
    directive_id = await _issued(server, city)
    async with server.socket(await token(server, "ward003")) as ws:
        async with server.ctx.write():
            # The write path is held: the op waits in the writer's queue...
            await ws.send(op="ack", directive_id=directive_id, ref="held")
            await asyncio.sleep(0.2)
            # ...and the socket still answers other frames meanwhile.
            await ws.send(op="ping")
            assert (await answer_or_pong(ws))["op"] == "pong"
        assert (await answer_to(ws, "held"))["op"] == "ok"


async def answer_or_pong(ws: WsClient) -> dict[str, Any]:
    """The next answer or pong, skipping events and signals (presence of other sockets)."""
    while True:
        message = await ws.recv()
        if message.get("op") in ("pong", "ok", "error"):
            return message
