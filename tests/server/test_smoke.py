from __future__ import annotations

from server.demo import DemoCity
from tests.conftest import DEMO_PASSWORD
from tests.harness import RunningServer


async def test_login_and_socket(server: RunningServer, city: DemoCity) -> None:
    token = await server.login("ward001", DEMO_PASSWORD)
    async with server.socket(token) as client:
        assert client.ready["user_id"] == city.ward_user_ids[0]
        await client.send(op="ping")
        assert (await client.recv())["op"] == "pong"
