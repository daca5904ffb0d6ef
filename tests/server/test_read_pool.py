"""Reads never wait for writes: while every write connection is taken (one holding the
write path, the others queued behind it), an authenticated read still answers."""

from __future__ import annotations

import asyncio

from server.demo import seed_demo
from tests.conftest import DEMO_PASSWORD, MakeServer


async def test_a_read_answers_while_writes_hold_every_connection(make_server: MakeServer) -> None:
    server = await make_server(db_pool_size=1)
    city, _ = await seed_demo(server.ctx, password=DEMO_PASSWORD, communes=2, delegates=2)
    token = await server.login("ward001", DEMO_PASSWORD)
    release = asyncio.Event()

    async def write() -> None:
        async with server.ctx.write():
            await release.wait()

    # One write holds the write path; two more wait for it (for the lock, or on PostgreSQL
    # for one of the write pool's two connections).
    writers = [asyncio.create_task(write()) for _ in range(3)]
    try:
        await asyncio.sleep(0.2)
        assert not any(w.done() for w in writers)
        async with server.http(token) as http:
            me = await asyncio.wait_for(http.get("/api/v1/me"), 10)
            channels = await asyncio.wait_for(http.get("/api/v1/channels"), 10)
        assert me.status_code == 200, me.text
        assert channels.status_code == 200, channels.text
        assert me.json()["id"] == city.ward_user_ids[0]
    finally:
        release.set()
        await asyncio.gather(*writers)
