from __future__ import annotations

from server.demo import DemoCity
from tests.conftest import DEMO_PASSWORD
from tests.harness import RunningServer


async def test_login_and_socket(server: RunningServer, city: DemoCity) -> None:
    token = await server.login("ward001", DEMO_PASSWORD)
    async with server.socket(token) as client:
        assert client.ready["user_id"] == city.ward_user_ids[0]
        await client.send(op="ping")
        # Features may send signals (presence) meanwhile; the pong still comes.
        ops = []
        while not ops or ops[-1] != "pong":
            ops.append((await client.recv())["op"])
        assert set(ops) <= {"signal", "event", "pong"}
