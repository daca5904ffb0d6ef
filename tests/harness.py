"""Test harness: fresh databases per test, real uvicorn servers on loopback, real sockets.

Backends come from the environment, as in CI:

* SQLite with the in-memory broker always;
* PostgreSQL with Redis when ``DIENHONG_TEST_DATABASE_URL`` (and ``DIENHONG_TEST_REDIS_URL``)
  are set. With ``CI=true`` both must be set and reachable: the tests fail, never skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import itertools
import json
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, overload

import httpx
import uvicorn
import websockets
from sqlalchemy.engine import make_url

from server.app import create_app
from server.cli import uvicorn_options
from server.clock import Clock
from server.context import Context
from server.features import Feature
from server.migrate import migrate
from server.settings import Settings

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_URL = os.environ.get("DIENHONG_TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("DIENHONG_TEST_REDIS_URL", "")
_counter = itertools.count(1)
T = TypeVar("T")
# How long ``eventually`` waits unless told, and how often it asks again.
EVENTUALLY_TIMEOUT_SECS = 10.0
EVENTUALLY_INTERVAL_SECS = 0.02


@overload
async def eventually(
    condition: Callable[[], Awaitable[T]],
    what: str = ...,
    *,
    timeout: float = ...,
    interval: float = ...,
    ignoring: tuple[type[BaseException], ...] = ...,
) -> T: ...
@overload
async def eventually(
    condition: Callable[[], T],
    what: str = ...,
    *,
    timeout: float = ...,
    interval: float = ...,
    ignoring: tuple[type[BaseException], ...] = ...,
) -> T: ...
async def eventually(
    condition: Callable[[], Any],
    what: str = "",
    *,
    timeout: float = EVENTUALLY_TIMEOUT_SECS,
    interval: float = EVENTUALLY_INTERVAL_SECS,
    ignoring: tuple[type[BaseException], ...] = (),
) -> Any:
    """Ask ``condition`` (a function, sync or async) until it returns something true, and
    return that; fail after ``timeout`` seconds with a message naming ``what`` was awaited.

    For things that happen in their own time (another task, process or node); a deadline
    of the server's own is never waited for: tests move the injected clock instead.
    Exceptions of the ``ignoring`` types count as "not yet"; any other one is raised.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: object = None
    while True:
        try:
            result = condition()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            last = result
        except ignoring as exc:
            last = exc
        if loop.time() >= deadline:
            raise AssertionError(
                f"still waiting for {what or _name(condition)} after "
                f"{timeout:g} s "
                f"(last answer: {last!r})"
            )
        await asyncio.sleep(interval)


def _name(condition: Callable[[], Any]) -> str:
    return getattr(condition, "__name__", "") or repr(condition)


def backends() -> list[str]:
    chosen = ["sqlite"]
    if PG_URL:
        chosen.append("postgresql")
    elif IN_CI:
        raise RuntimeError(
            "CI=true but DIENHONG_TEST_DATABASE_URL is not set: the PostgreSQL "
            "half of the suite must run in CI"
        )
    return chosen


@dataclass
class Templates:
    """A migrated database per backend, copied for every test."""

    root: Path
    sqlite_file: Path | None = None
    pg_template: str | None = None
    created: list[str] = field(default_factory=list)


def _pg_admin_dsn() -> str:
    url = make_url(PG_URL)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def _pg_execute(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_pg_admin_dsn())
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def build_templates(root: Path) -> Templates:
    templates = Templates(root=root)
    sqlite_dir = root / "sqlite-template"
    sqlite_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(migrate(Settings(data_dir=sqlite_dir)))
    templates.sqlite_file = sqlite_dir / "dienhong.sqlite3"
    if PG_URL:
        name = f"dh_tmpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        asyncio.run(_pg_execute(f'CREATE DATABASE "{name}"'))
        url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
        asyncio.run(migrate(Settings(data_dir=root, database_url=url)))
        templates.pg_template = name
    return templates


def drop_templates(templates: Templates) -> None:
    if templates.pg_template:
        asyncio.run(_pg_execute(f'DROP DATABASE IF EXISTS "{templates.pg_template}" WITH (FORCE)'))


async def fresh_database(templates: Templates, backend: str, data_dir: Path) -> str:
    """A new database, already migrated; returns its URL ('' means SQLite in data_dir)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if backend == "sqlite":
        assert templates.sqlite_file is not None
        shutil.copyfile(templates.sqlite_file, data_dir / "dienhong.sqlite3")
        return ""
    name = f"dh_t_{os.getpid()}_{next(_counter)}_{uuid.uuid4().hex[:4]}"
    await _pg_execute(f'CREATE DATABASE "{name}" TEMPLATE "{templates.pg_template}"')
    templates.created.append(name)
    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


async def drop_database(url: str) -> None:
    if url:
        name = make_url(url).database
        await _pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# A test server that has not stopped after this long hangs (uvicorn itself allows open
# connections 10 s, ``uvicorn_options``).
SERVER_STOP_SECS = 60


def _task_stacks() -> str:
    """Every pending task of this loop with its stack, for the report of a hang."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        if task is not asyncio.current_task():
            task.print_stack(limit=12, file=out)
    return out.getvalue()


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.set_inheritable(True)
    return sock


class RunningServer:
    """A real uvicorn server on an ephemeral loopback port, in this event loop."""

    def __init__(
        self, settings: Settings, clock: Clock | None, features: list[Feature] | None
    ) -> None:
        self.settings = settings
        self.app = create_app(settings, clock=clock, features=features)
        self.ctx: Context = self.app.state.ctx
        self._sock = free_socket()
        port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/ws"
        options = uvicorn_options(settings) | {"log_level": "warning"}
        self._server = uvicorn.Server(uvicorn.Config(self.app, **options))  # type: ignore[arg-type]
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        task = self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]))

        def started() -> bool:
            if task.done():
                task.result()  # raises what stopped it
            return bool(self._server.started)

        await eventually(started, "the server to start", interval=0.01)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            try:
                # uvicorn gives open connections ``timeout_graceful_shutdown`` and then
                # runs the shutdown hooks: a stop that takes far longer is a hang. The
                # test fails with every task's stack instead of holding the suite.
                await asyncio.wait_for(asyncio.shield(self._task), SERVER_STOP_SECS)
            except TimeoutError:
                stacks = _task_stacks()
                self._task.cancel()
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(self._task, 5)
                self._sock.close()
                raise AssertionError(
                    f"the test server did not stop within {SERVER_STOP_SECS} s; its tasks:\n"
                    + stacks
                ) from None
        self._sock.close()

    def http(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)

    async def login(self, username: str, password: str) -> str:
        async with self.http() as client:
            response = await client.post(
                "/api/v1/auth/login", json={"username": username, "password": password}
            )
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    @asynccontextmanager
    async def socket(self, token: str, **kwargs: Any) -> AsyncIterator[WsClient]:
        async with websockets.connect(self.ws_url, max_size=None, **kwargs) as ws:
            client = WsClient(ws)
            ready = await client.auth(token)
            client.ready = ready
            yield client


class WsClient:
    """A thin client of the /ws protocol that keeps the last seq per topic."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ready: dict[str, Any] = {}
        self.last: dict[str, int] = {}

    async def send(self, **frame: Any) -> None:
        await self.ws.send(json.dumps(frame))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        message: dict[str, Any] = json.loads(raw)
        if message.get("op") == "event":
            self.last[message["topic"]] = message["seq"]
        return message

    async def auth(self, token: str) -> dict[str, Any]:
        await self.send(op="auth", token=token)
        ready = await self.recv()
        assert ready["op"] == "ready", ready
        self.last.update(ready["topics"])
        return ready

    async def subscribe(self, topics: dict[str, int]) -> list[dict[str, Any]]:
        """Subscribe and collect frames until every topic answered subscribed or error."""
        await self.send(op="subscribe", topics=topics)
        pending = set(topics)
        frames: list[dict[str, Any]] = []
        while pending:
            message = await self.recv()
            frames.append(message)
            if message["op"] in ("subscribed", "error") and message.get("topic") in pending:
                pending.discard(message["topic"])
        return frames

    async def next_event(self, type: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """The next event (of ``type``), skipping other frames."""
        while True:
            message = await self.recv(timeout)
            if message.get("op") == "event" and (type is None or message["type"] == type):
                return message


def test_settings(data_dir: Path, database_url: str, backend: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "redis_url": REDIS_URL if backend == "postgresql" else "",
        "redis_channel": f"dienhong:test:{uuid.uuid4().hex}",
        "log_sweep_interval_secs": 0.5,
        "log_json": False,
    }
    values.update(overrides)
    return Settings(**values)
