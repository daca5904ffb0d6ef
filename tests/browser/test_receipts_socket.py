"""The chat client reads and acknowledges an instruction over its socket when it is online
("Xác nhận" sends an ``ack`` frame, no HTTP request), and over HTTP when the socket is lost
before the answer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import select

from messaging.models import DirectiveRecipient
from server.demo import DemoCity
from tests.browser.conftest import signed_in, wait_online
from tests.conftest import DEMO_PASSWORD
from tests.harness import RunningServer

pytestmark = pytest.mark.browser


async def _issue(server: RunningServer, city: DemoCity) -> int:
    token = await server.login("standing", DEMO_PASSWORD)
    async with server.http(token) as api:
        response = await api.post(
            "/api/v1/directives",
            json={
                "title": "Hỏa tốc: kiểm tra đê điều trước lũ",
                "body": "Các đơn vị báo cáo tình trạng đê trong ngày.",
                "urgency": "express",
                "ack_required": True,
                "targets": {"unit_ids": city.commune_unit_ids[:2], "include_descendants": False},
            },
        )
    assert response.status_code == 201, response.text
    directive_id: int = response.json()["id"]
    return directive_id


async def _receipt(server: RunningServer, directive_id: int, user_id: int) -> DirectiveRecipient:
    async with server.ctx.read() as session:
        return (
            await session.execute(
                select(DirectiveRecipient).where(
                    DirectiveRecipient.directive_id == directive_id,
                    DirectiveRecipient.user_id == user_id,
                )
            )
        ).scalar_one()


def _posts(page: Any) -> list[str]:
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    return posts


async def test_acknowledge_goes_over_the_socket(
    server: RunningServer, city: DemoCity, browser: Any
) -> None:
    directive_id = await _issue(server, city)
    _, page = await signed_in(server, browser, "ward001")
    frames: list[dict[str, Any]] = []

    def on_socket(ws: Any) -> None:
        ws.on(
            "framesent",
            lambda payload: (
                frames.append(json.loads(payload)) if isinstance(payload, str) else None
            ),
        )

    page.on("websocket", on_socket)
    posts = _posts(page)
    await page.goto(f"{server.url}/app/chat/#directive/{directive_id}")
    await wait_online(page)
    await page.wait_for_selector("#ack-form")
    await page.fill("#ack-note", "Đã nhận, đê an toàn.")
    await page.click("#ack-button")
    await page.wait_for_selector("#acked-tag")
    ops = {f.get("op"): f for f in frames}
    assert ops["ack"]["directive_id"] == directive_id
    assert ops["ack"]["note"] == "Đã nhận, đê an toàn."
    assert ops["read"]["directive_id"] == directive_id
    assert [u for u in posts if "/directives/" in u] == []
    row = await _receipt(server, directive_id, city.ward_user_ids[0])
    assert row.acknowledged_at is not None and row.read_at is not None
    assert row.ack_note == "Đã nhận, đê an toàn."
    assert page.js_errors == []
    await page.context.close()


async def test_acknowledge_falls_back_to_http(
    server: RunningServer, city: DemoCity, browser: Any
) -> None:
    directive_id = await _issue(server, city)
    _, page = await signed_in(server, browser, "ward002")
    closing: set[asyncio.Task[None]] = set()

    async def route(ws: Any) -> None:
        upstream = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            if isinstance(message, str) and json.loads(message).get("op") == "ack":
                # The socket is lost before the answer comes.
                task = asyncio.ensure_future(ws.close(code=4000, reason="lost"))
                closing.add(task)
                return
            upstream.send(message)

        ws.on_message(from_page)

    await page.route_web_socket("**/ws", route)
    posts = _posts(page)
    await page.goto(f"{server.url}/app/chat/#directive/{directive_id}")
    await wait_online(page)
    await page.wait_for_selector("#ack-form")
    await page.click("#ack-button")
    await page.wait_for_selector("#acked-tag")
    assert [u for u in posts if u.endswith(f"/directives/{directive_id}/ack")], posts
    row = await _receipt(server, directive_id, city.ward_user_ids[1])
    assert row.acknowledged_at is not None
    assert page.js_errors == []
    await page.context.close()
