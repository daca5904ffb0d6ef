"""The baseline: a bare ``websockets`` server that only broadcasts, for ``bench/fanout.py``.

It speaks just enough of the gateway's protocol for the same client swarm: the first frame
``{"op": "auth", "token": "<user id>"}`` gets ``ready``; a connection to ``/control`` sends
``{"op": "broadcast", "mode": "shared"|"user", "round": r, "data": {...}}`` and the server
writes one event frame to every client (``shared``: one frame text for all, through
``websockets.broadcast``; ``user``: a frame per client on its ``user:`` topic). No queue,
no task per client, no log: the cheapest fan-out the library allows.

    python -m bench.bare --port 9001 [--deflate] [--ping-interval 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from datetime import UTC, datetime

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

from bench.common import raise_open_files


class Bare:
    def __init__(self) -> None:
        self.clients: dict[ServerConnection, int] = {}

    async def handler(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else "/"
        if path.startswith("/control"):
            await self.control(ws)
            return
        try:
            auth = json.loads(await ws.recv())
            user_id = int(auth["token"])
            await ws.send(
                json.dumps({"op": "ready", "user_id": user_id, "topics": {f"user:{user_id}": 0}})
            )
            self.clients[ws] = user_id
            async for _ in ws:
                pass
        except (ConnectionClosed, ValueError, KeyError):
            pass
        finally:
            self.clients.pop(ws, None)

    async def control(self, ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                command = json.loads(raw)
                at = datetime.now(UTC).isoformat()
                data = command["data"]
                if command["mode"] == "shared":
                    text = json.dumps(
                        {
                            "op": "event",
                            "topic": "unit:1",
                            "seq": command["round"],
                            "type": "directive.issued",
                            "data": data,
                            "at": at,
                        },
                        ensure_ascii=False,
                        separators=(",", ":"),
                    )
                    broadcast(list(self.clients), text)
                else:
                    for client, user_id in list(self.clients.items()):
                        text = json.dumps(
                            {
                                "op": "event",
                                "topic": f"user:{user_id}",
                                "seq": command["round"],
                                "type": "directive.issued",
                                "data": data,
                                "at": at,
                            },
                            ensure_ascii=False,
                            separators=(",", ":"),
                        )
                        broadcast([client], text)
                await ws.send(json.dumps({"op": "done", "clients": len(self.clients)}))


async def main(port: int, deflate: bool, ping_interval: float) -> None:
    bare = Bare()
    extensions = (
        [
            ServerPerMessageDeflateFactory(
                server_max_window_bits=12,
                client_max_window_bits=12,
                compress_settings={"memLevel": 5},
            )
        ]
        if deflate
        else None
    )
    async with serve(
        bare.handler,
        "127.0.0.1",
        port,
        compression=None,
        extensions=extensions,
        max_size=65_536,
        ping_interval=ping_interval,
        ping_timeout=20,
        backlog=4096,
    ):
        await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--deflate",
        action="store_true",
        help="negotiate permessage-deflate like uvicorn does by default",
    )
    parser.add_argument(
        "--ping-interval",
        type=float,
        default=20.0,
        help="keepalive ping interval per socket, in seconds",
    )
    args = parser.parse_args()
    raise_open_files()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(args.port, args.deflate, args.ping_interval))
