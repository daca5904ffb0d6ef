"""Benchmark: a 200-page meeting document on 95 tablets.

    python -m bench.documents [--pages 200] [--tablets 95] [--rounds 5]

A real server (the ``dienhong`` app under uvicorn, in its own process, SQLite in a
temporary data dir) on loopback. The chair uploads a ``--pages`` page PDF (Vietnamese
text, generated with fpdf2) and puts it on the meeting's agenda; every read after that is
a delegate's, authorised through the agenda as in a council session; then:

* upload: the response time of ``POST /api/v1/files`` (checked by pypdf in a worker);
* time to first page: from the start of the upload until page 1 arrives as a PNG at the
  default width (the server renders the first pages ahead after upload);
* time to all pages: from the start of the upload until every page has arrived, fetched
  by 8 concurrent readers;
* cold page fetch: ``--tablets`` clients ask for the same page at once, at a width not yet
  rendered (one render, everyone waits for it), ``--rounds`` times on different pages;
* warm page fetch: the same, for pages already in the disk cache;
* 304: the same, with ``If-None-Match`` (what a tablet's cache sends);
* baseline in the same run: ``--tablets`` clients fetching ``GET /api/v1/me`` at once;
  and one client alone fetching a warm page, then ``/api/v1/me``, 100 times each;
* the 95-tablet burst: one client per tablet, each a delegate of its own on a fresh
  connection (as tablets are after reading longer than the keep-alive), made by two curl
  processes (``curl`` must be installed), every tablet having opened the meeting first as
  in a sitting, asking at once for a warm WebP page at 1280 px, next to the same burst of
  ``GET /api/v1/me``; directly from a node, and through nginx running
  ``deploy/nginx/dienhong.conf`` (TLS, the page sent by nginx through ``X-Accel-Redirect``
  from a second node process on the same data directory). Without nginx installed the
  proxied rows are left out (``--no-proxy`` too);
* the floor of each burst in the same run: the same clients against something that only
  sends the page's bytes (a bare ASGI app under the same uvicorn options; nginx sending
  the file itself, no node asked): what this machine and its clients allow;
* the bytes of one presented page turn: the meeting (``--tablets`` delegates) in session,
  every tablet on its socket; the chair turns the page; every frame each tablet gets and
  sends (WebSocket frames, as js/realtime.js confirms them) is counted. A tablet that
  pre-downloaded shows the page from its cache: that is all. Without pre-download each
  tablet also fetches the page image at 1280 px (request, headers and body counted).

Latencies are per request, p50 and p99 over every request of every round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import free_port, percentile

PASSWORD = "bench-password-1"
DEFAULT_WIDTH = 1024
COLD_WIDTH = 1280
ALL_PAGES_READERS = 8
BURST_WIDTH = 1280
ACCEL_PREFIX = "/_dienhong_renders/"
# The page's bytes, for the bursts' floors (in the data dir).
FLOOR_FILE = "floor.webp"
# Requests one after another, for the cost of one request without contention.
SEQUENTIAL = 100


@dataclass(frozen=True)
class Seeded:
    delegates: list[str]
    chair: str
    meeting_id: int


def settings_for(data_dir: Path, accel_redirect_prefix: str = "") -> Any:
    from server.settings import Settings

    return Settings(
        data_dir=data_dir,
        log_json=False,
        log_level="WARNING",
        serve_web_client=False,
        render_default_width=DEFAULT_WIDTH,
        accel_redirect_prefix=accel_redirect_prefix,
    )


def make_document(pages: int) -> bytes:
    from fpdf import FPDF

    from server.files.fonts import FONT_BOLD, FONT_REGULAR

    pdf = FPDF()
    pdf.add_font("DejaVu", "", str(FONT_REGULAR))
    pdf.add_font("DejaVu", "B", str(FONT_BOLD))
    pdf.set_title("Báo cáo kinh tế - xã hội năm 2026")
    line = (
        "Hội đồng nhân dân thành phố thảo luận báo cáo tình hình kinh tế - xã hội, "
        "thu chi ngân sách và kế hoạch đầu tư công trung hạn. "
    )
    for number in range(1, pages + 1):
        pdf.add_page()
        pdf.set_font("DejaVu", "B", 16)
        pdf.cell(0, 10, f"Phần {number}", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("DejaVu", size=11)
        pdf.multi_cell(0, 6, line * 12)
    return bytes(pdf.output())


async def prepare(data_dir: Path, delegates: int = 3) -> Seeded:
    """Migrate, seed a small demo city whose meeting has ``delegates`` delegates."""
    from sqlalchemy import select

    from meeting.models import Meeting
    from server.app import create_app
    from server.demo import seed_demo
    from server.migrate import migrate

    settings = settings_for(data_dir)
    await migrate(settings)
    app = create_app(settings)
    ctx = app.state.ctx
    try:
        city, _ = await seed_demo(ctx, password=PASSWORD, communes=2, delegates=delegates)
        now = datetime.now(UTC)
        async with ctx.read() as session:
            meeting_id = int(
                (
                    await session.execute(select(Meeting.id).order_by(Meeting.id).limit(1))
                ).scalar_one()
            )
        return Seeded(
            delegates=[str(ctx.tokens.issue(uid, now)[0]) for uid in city.delegate_ids],
            chair=str(ctx.tokens.issue(city.chair_id, now)[0]),
            meeting_id=meeting_id,
        )
    finally:
        await ctx.db.dispose()


def serve(data_dir: str, port: int, accel_redirect_prefix: str = "") -> None:
    """The server process."""
    import uvicorn

    from server.app import create_app
    from server.cli import uvicorn_options
    from server.logs import configure_logging

    settings = settings_for(Path(data_dir), accel_redirect_prefix)
    configure_logging(settings.log_level, as_json=False)
    options = uvicorn_options(settings) | {
        "log_level": "warning",
        "backlog": 4096,
        "timeout_keep_alive": 300,
    }
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, **options)  # type: ignore[arg-type]


def serve_floor(body_path: str, port: int) -> None:
    """The floor of the direct burst: a bare ASGI app under the same uvicorn options that
    answers every request with the page's bytes (no middleware, no authorisation, no
    database): what this machine and the burst's clients allow at best."""
    import uvicorn

    from server.cli import uvicorn_options
    from server.settings import Settings

    body = Path(body_path).read_bytes()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"image/webp")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    options = uvicorn_options(Settings(data_dir=Path(body_path).parent)) | {
        "log_level": "warning",
        "backlog": 4096,
        "timeout_keep_alive": 300,
        "lifespan": "off",
    }
    uvicorn.run(app, host="127.0.0.1", port=port, **options)  # type: ignore[arg-type]


async def floor_row(
    label: str, base: str, tablets: int, rounds: int, path: str, cafile: str | None = None
) -> None:
    """The same fresh burst against something that only sends the bytes."""
    times: list[float] = []
    for _ in range(rounds):
        times += await fresh_burst(base, ["-"], tablets, path, cafile)
    show(f"{label}: the same bytes, nothing else (floor)", times)


async def timed_get(
    client: httpx.AsyncClient, path: str, headers: dict[str, str] | None = None, expect: int = 200
) -> float:
    started = time.perf_counter()
    response = await client.get(path, headers=headers)
    elapsed = time.perf_counter() - started
    if response.status_code != expect:
        raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:200]}")
    return elapsed


async def stampede(
    client: httpx.AsyncClient,
    tablets: int,
    path: str,
    headers: dict[str, str] | None = None,
    expect: int = 200,
) -> list[float]:
    """``tablets`` requests for the same thing, all at once."""
    return list(
        await asyncio.gather(*(timed_get(client, path, headers, expect) for _ in range(tablets)))
    )


def show(label: str, values: list[float]) -> None:
    print(
        f"  {label:<44} p50 {percentile(values, 0.5) * 1000:8.1f} ms   "
        f"p99 {percentile(values, 0.99) * 1000:8.1f} ms   (n={len(values)})"
    )


# The curl processes a burst is shared among: one curl does its transfers' TLS handshakes
# one after another, on one core.
CURL_PROCS = 2


def curl_config(
    base: str, tokens: Sequence[str], tablets: int, path: str, cafile: str | None
) -> str:
    """One curl run for a burst: every tablet a transfer of its own, all started at once
    (``parallel-immediate``: no waiting to share a connection), so each is a new
    connection; each prints its status and its time from start to last byte."""
    lines = ["parallel", "parallel-immediate", f"parallel-max = {min(tablets, 300)}"]
    for index in range(tablets):
        if index:
            lines.append("next")
        lines += [
            f'url = "{base}{path}"',
            "http1.1",
            "silent",
            "show-error",
            "output = /dev/null",
            'write-out = "%{http_code} %{time_total}\\n"',
        ]
        token = tokens[index % len(tokens)]
        if token != "-":
            lines.append(f'header = "Authorization: Bearer {token}"')
        if cafile:
            lines.append(f'cacert = "{cafile}"')
    return "\n".join(lines) + "\n"


async def fresh_burst(
    base: str, tokens: Sequence[str], tablets: int, path: str, cafile: str | None = None
) -> list[float]:
    """``tablets`` clients, one request each on a new connection, all at once; each
    request is timed alone. Tablet i signs in with ``tokens[i]`` (round robin when there
    are fewer tokens; ``"-"`` sends none).

    The clients are ``CURL_PROCS`` curl processes (C, TLS by OpenSSL): Python client
    processes, doing the 95 TLS handshakes on the server's own cores, were most of what
    they measured."""
    procs = CURL_PROCS

    async def one(mine: list[str], count: int) -> tuple[int, str, str]:
        with tempfile.NamedTemporaryFile("w", suffix=".curlrc") as config:
            config.write(curl_config(base, mine, count, path, cafile))
            config.flush()
            curl = await asyncio.create_subprocess_exec(
                "curl",
                "--config",
                config.name,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await curl.communicate()
        return curl.returncode or 0, out.decode(), err.decode()

    shares = [
        [tokens[i % len(tokens)] for i in range(index, tablets, procs)]
        for index in range(min(procs, tablets))
    ]
    results = await asyncio.gather(*(one(share, len(share)) for share in shares))
    answers = [line.split() for _, out, _ in results for line in out.splitlines() if line.strip()]
    refused = [code for code, _ in answers if code != "200"]
    failed = [(code, err) for code, _, err in results if code]
    if failed or refused or len(answers) != tablets:
        raise RuntimeError(
            f"GET {path}: {len(answers)} answers of {tablets}, not 200: {refused[:5]}; "
            f"curl: {failed[:1]}"
        )
    return [float(seconds) for _, seconds in answers]


async def burst_rows(
    label: str,
    base: str,
    tokens: Sequence[str],
    tablets: int,
    rounds: int,
    page_path: str,
    meeting_id: int,
    cafile: str | None = None,
) -> None:
    """The warm-page burst and the /api/v1/me burst, alternating round by round: each
    tablet a delegate of its own. As in a sitting, every tablet has opened the meeting
    first (untimed); the first page turn is still the first read of this document by each
    delegate, checked against the agenda."""
    await fresh_burst(base, tokens[:1], 1, page_path, cafile)  # rendered and cached
    await fresh_burst(base, tokens, tablets, f"/api/v1/meetings/{meeting_id}", cafile)
    pages: list[float] = []
    me: list[float] = []
    for _ in range(rounds):
        pages += await fresh_burst(base, tokens, tablets, page_path, cafile)
        me += await fresh_burst(base, tokens, tablets, "/api/v1/me", cafile)
    show(f"{label}: warm WebP page, {tablets} fresh tablets", pages)
    show(f"{label}: GET /api/v1/me, {tablets} fresh tablets", me)


async def run(base: str, token: str, seeded: Seeded, pages: int, tablets: int, rounds: int) -> int:
    """Every read is a delegate's (``token``); the document is the chair's, uploaded and
    put on the meeting's agenda, as in a council: each read is authorised through the
    agenda, not as the uploader's own file."""
    document = make_document(pages)
    print(
        f"document: {pages} pages, {len(document) / 1024:.0f} KiB; {tablets} tablets, "
        f"{rounds} rounds"
    )
    limits = httpx.Limits(max_connections=tablets + 5, max_keepalive_connections=tablets + 5)
    async with httpx.AsyncClient(
        base_url=base, timeout=120, limits=limits, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        await stampede(client, tablets, "/api/v1/me")  # open the connections
        baseline = []
        for _ in range(rounds):
            baseline += await stampede(client, tablets, "/api/v1/me")

        chair = {"Authorization": f"Bearer {seeded.chair}"}
        started = time.perf_counter()
        response = await client.post(
            "/api/v1/files",
            files={"file": ("bao-cao.pdf", document, "application/pdf")},
            headers=chair,
        )
        uploaded = time.perf_counter() - started
        if response.status_code != 201:
            raise RuntimeError(response.text)
        file_id = response.json()["id"]
        await timed_get(client, f"/api/v1/files/{file_id}/pages/1.png", chair)
        first_page = time.perf_counter() - started
        listed = await client.post(
            f"/api/v1/meetings/{seeded.meeting_id}/agenda",
            json={"title": "Báo cáo kinh tế - xã hội", "document_ids": [file_id]},
            headers=chair,
        )
        if listed.status_code != 201:
            raise RuntimeError(listed.text)

        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=pages)
        for page in range(1, pages + 1):
            queue.put_nowait(page)

        async def reader() -> None:
            while not queue.empty():
                page = queue.get_nowait()
                await timed_get(client, f"/api/v1/files/{file_id}/pages/{page}.png")

        await asyncio.gather(*(reader() for _ in range(ALL_PAGES_READERS)))
        all_pages = time.perf_counter() - started

        cold: list[float] = []
        warm: list[float] = []
        not_modified: list[float] = []
        for round_ in range(rounds):
            page = 1 + (round_ * 37) % pages
            path = f"/api/v1/files/{file_id}/pages/{page}.png?width={COLD_WIDTH}"
            cold += await stampede(client, tablets, path)
            warm_path = f"/api/v1/files/{file_id}/pages/{page}.png"
            warm += await stampede(client, tablets, warm_path)
            etag = (await client.get(warm_path)).headers["etag"]
            not_modified += await stampede(
                client, tablets, warm_path, {"If-None-Match": etag}, expect=304
            )
        png = await client.get(f"/api/v1/files/{file_id}/pages/1.png")
        single_page = [
            await timed_get(client, f"/api/v1/files/{file_id}/pages/1.png")
            for _ in range(SEQUENTIAL)
        ]
        single_me = [await timed_get(client, "/api/v1/me") for _ in range(SEQUENTIAL)]

    print(f"  upload (checked in a worker)                 {uploaded * 1000:8.1f} ms")
    print(f"  time to first page (from upload start)       {first_page * 1000:8.1f} ms")
    print(
        f"  time to all {pages} pages ({ALL_PAGES_READERS} readers)            "
        f"{all_pages * 1000:8.1f} ms  ({pages / (all_pages - uploaded):.1f} pages/s "
        "after upload)"
    )
    print(f"  page PNG at {DEFAULT_WIDTH} px: {len(png.content) / 1024:.0f} KiB")
    show(f"cold page, {tablets} tablets at once (1 render)", cold)
    show(f"warm page, {tablets} tablets at once", warm)
    show(f"304 revalidation, {tablets} tablets at once", not_modified)
    show(f"baseline GET /api/v1/me, {tablets} at once", baseline)
    show("warm page, one tablet alone", single_page)
    show("baseline GET /api/v1/me, one tablet alone", single_me)
    print(
        f"  mean cold {statistics.mean(cold) * 1000:.1f} ms, warm "
        f"{statistics.mean(warm) * 1000:.1f} ms"
    )
    async with httpx.AsyncClient(
        base_url=base, timeout=120, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        webp = await client.get(f"/api/v1/files/{file_id}/pages/2.webp?width={BURST_WIDTH}")
    print(f"  page WebP at {BURST_WIDTH} px: {len(webp.content) / 1024:.0f} KiB")
    await burst_rows(
        "direct",
        base,
        seeded.delegates,
        tablets,
        rounds,
        f"/api/v1/files/{file_id}/pages/2.webp?width={BURST_WIDTH}",
        seeded.meeting_id,
    )
    return int(file_id)


# Page turns measured (the bytes of one are their mean).
TURNS = 5
# How long a tablet keeps listening after the turn's event, for anything else it brings.
SETTLE_SECS = 0.5


def frame_bytes(payload: int, masked: bool) -> int:
    """A WebSocket frame's size on the wire: header, mask (client to server), payload."""
    header = 2 if payload < 126 else 4 if payload < 65536 else 10
    return header + (4 if masked else 0) + payload


def http_bytes(response: httpx.Response) -> tuple[int, int]:
    """Bytes of a request and of its answer (start lines, headers and bodies, HTTP/1.1)."""
    request = response.request
    asked = (
        len(f"{request.method} {request.url.raw_path.decode()} HTTP/1.1\r\n")
        + 2
        + sum(len(k) + len(v) + 4 for k, v in request.headers.raw)
        + len(request.content)
    )
    answered = (
        len(f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\n")
        + 2
        + sum(len(k) + len(v) + 4 for k, v in response.headers.raw)
        + int(response.headers.get("content-length", len(response.content)))
    )
    return asked, answered


async def page_turn_bytes(base: str, seeded: Seeded, pages: int) -> None:
    """The bytes one presented page turn costs the hall: every tablet on its socket gets
    the event and confirms it (``received``, as js/realtime.js does); a tablet that
    pre-downloaded the document shows the page from its own cache, one that did not asks
    for the page image at its width (``BURST_WIDTH``)."""
    from websockets.asyncio.client import connect

    meeting = seeded.meeting_id
    async with httpx.AsyncClient(
        base_url=base, timeout=120, headers={"Authorization": f"Bearer {seeded.chair}"}
    ) as chair:
        # The chair's own copy of the document goes on the agenda.
        uploaded = await chair.post(
            "/api/v1/files",
            files={"file": ("bao-cao.pdf", make_document(pages), "application/pdf")},
        )
        if uploaded.status_code != 201:
            raise RuntimeError(uploaded.text)
        file_id = int(uploaded.json()["id"])
        item = await chair.post(
            f"/api/v1/meetings/{meeting}/agenda",
            json={"title": "Báo cáo kinh tế - xã hội", "document_ids": [file_id]},
        )
        if item.status_code != 201:
            raise RuntimeError(item.text)
        started = await chair.post(f"/api/v1/meetings/{meeting}/start")
        if started.status_code >= 300:
            raise RuntimeError(started.text)
        seq = int((await chair.get(f"/api/v1/meetings/{meeting}")).json()["seq"])
        ws_url = base.replace("http://", "ws://") + "/ws"
        down = [0] * len(seeded.delegates)
        up = [0] * len(seeded.delegates)
        heard = [asyncio.Event() for _ in seeded.delegates]
        ready = [asyncio.Event() for _ in seeded.delegates]
        counting = [False]

        async def tablet(index: int, token: str) -> None:
            async with connect(ws_url, max_size=None, compression=None) as ws:
                await ws.send(json.dumps({"op": "auth", "token": token}))
                await ws.send(
                    json.dumps({"op": "subscribe", "topics": {f"meeting:{meeting}": seq}})
                )
                async for raw in ws:
                    frame = json.loads(raw)
                    if frame.get("op") == "subscribed":
                        ready[index].set()
                    if not counting[0]:
                        continue
                    down[index] += frame_bytes(len(str(raw).encode()), masked=False)
                    if frame.get("op") == "event":
                        confirm = json.dumps(
                            {"op": "received", "topic": frame["topic"], "seq": frame["seq"]}
                        )
                        await ws.send(confirm)
                        up[index] += frame_bytes(len(confirm.encode()), masked=True)
                        if frame["type"] == "presentation.changed":
                            heard[index].set()

        tasks = [asyncio.create_task(tablet(i, token)) for i, token in enumerate(seeded.delegates)]
        try:
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), 120)
            per_turn_events: list[int] = []
            for turn in range(TURNS):
                for event in heard:
                    event.clear()
                down[:] = [0] * len(down)
                up[:] = [0] * len(up)
                counting[0] = True
                shown = await chair.post(
                    f"/api/v1/meetings/{meeting}/presentation",
                    json={
                        "agenda_item_id": item.json()["id"],
                        "document_id": file_id,
                        "page": 2 + turn % (pages - 1),
                    },
                )
                if shown.status_code >= 300:
                    raise RuntimeError(shown.text)
                await asyncio.wait_for(asyncio.gather(*(e.wait() for e in heard)), 60)
                await asyncio.sleep(SETTLE_SECS)
                counting[0] = False
                per_turn_events.append(sum(down) + sum(up))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    events = statistics.mean(per_turn_events)
    tablets = len(seeded.delegates)
    # Without the pre-download every tablet asks for the new page (the one after it was
    # fetched ahead at the previous turn, so one image a turn in the steady state).
    path = f"/api/v1/files/{file_id}/pages/3.webp?width={BURST_WIDTH}"
    async with httpx.AsyncClient(
        base_url=base,
        timeout=120,
        headers={
            "Authorization": f"Bearer {seeded.delegates[0]}",
            "Accept": "image/webp,*/*",
            "Accept-Encoding": "gzip, br",
        },
    ) as reader:
        response = await reader.get(path)
    asked, answered = http_bytes(response)
    print(
        f"  page turn, {tablets} tablets that pre-downloaded: {events / 1024:.1f} KiB in "
        f"all, events only ({events / tablets:.0f} B a tablet, WebSocket frames both "
        "ways; target < 100 KB)"
    )
    print(
        f"  page turn, {tablets} tablets without pre-download: "
        f"{(events + tablets * (asked + answered)) / 1024:.0f} KiB in all (a "
        f"{BURST_WIDTH} px text page: {len(response.content) / 1024:.1f} KiB image, "
        f"{(asked + answered) / 1024:.1f} KiB with the request and headers; target "
        "<= 60 KB a page)"
    )


async def proxied_burst(
    data_dir: Path,
    proxied_port: int,
    tokens: Sequence[str],
    tablets: int,
    rounds: int,
    file_id: int,
    meeting_id: int,
) -> None:
    """The burst through nginx in front of the node that answers with X-Accel-Redirect."""
    from tests.deploy.cluster import start_nginx, stop_nginx

    prefix = data_dir.parent / f"{data_dir.name}-nginx"
    # The floor: the same page's bytes sent by nginx from a file, no node asked.
    floor = f"    location = /floor.webp {{\n        alias {data_dir / FLOOR_FILE};\n    }}\n"
    nginx = await start_nginx(prefix, [proxied_port, proxied_port], data_dir, floor)
    try:
        await floor_row(
            "nginx", nginx.url, tablets, rounds, "/floor.webp", str(nginx.prefix / "fullchain.pem")
        )
        await burst_rows(
            "nginx",
            nginx.url,
            tokens,
            tablets,
            rounds,
            f"/api/v1/files/{file_id}/pages/2.webp?width={BURST_WIDTH}",
            meeting_id,
            cafile=str(nginx.prefix / "fullchain.pem"),
        )
    finally:
        await stop_nginx(nginx)
        shutil.rmtree(prefix, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--tablets", type=int, default=95)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-proxy", action="store_true", help="leave out the burst through nginx")
    args = parser.parse_args()
    if shutil.which("curl") is None:
        parser.error("the bursts are made by curl: install it (apt-get install curl)")
    with_proxy = not args.no_proxy and shutil.which("nginx") is not None
    data_dir = Path(tempfile.mkdtemp(prefix="dienhong-bench-docs-"))
    servers: list[multiprocessing.process.BaseProcess] = []
    try:
        seeded = asyncio.run(prepare(data_dir, args.tablets))
        token = seeded.delegates[0]
        port, proxied_port = free_port(), free_port()
        spawn = multiprocessing.get_context("spawn")
        servers.append(spawn.Process(target=serve, args=(str(data_dir), port)))
        if with_proxy:
            servers.append(
                spawn.Process(target=serve, args=(str(data_dir), proxied_port, ACCEL_PREFIX))
            )
        for server in servers:
            server.start()
        base = f"http://127.0.0.1:{port}"

        async def wait_ready(url: str) -> None:
            async with httpx.AsyncClient() as probe:
                for _ in range(2400):  # two minutes: a loaded machine starts slowly
                    try:
                        if (await probe.get(f"{url}/healthz")).status_code == 200:
                            return
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.05)
            raise RuntimeError("the server did not start")

        asyncio.run(wait_ready(base))
        file_id = asyncio.run(run(base, token, seeded, args.pages, args.tablets, args.rounds))
        floor_port = free_port()
        page = httpx.get(
            f"{base}/api/v1/files/{file_id}/pages/2.webp?width={BURST_WIDTH}",
            headers={"Authorization": f"Bearer {token}"},
        )
        (data_dir / FLOOR_FILE).write_bytes(page.content)
        servers.append(
            spawn.Process(target=serve_floor, args=(str(data_dir / FLOOR_FILE), floor_port))
        )
        servers[-1].start()
        asyncio.run(wait_ready(f"http://127.0.0.1:{floor_port}"))
        asyncio.run(
            floor_row("direct", f"http://127.0.0.1:{floor_port}", args.tablets, args.rounds, "/")
        )
        asyncio.run(page_turn_bytes(base, seeded, args.pages))
        if with_proxy:
            asyncio.run(wait_ready(f"http://127.0.0.1:{proxied_port}"))
            asyncio.run(
                proxied_burst(
                    data_dir,
                    proxied_port,
                    seeded.delegates,
                    args.tablets,
                    args.rounds,
                    file_id,
                    seeded.meeting_id,
                )
            )
        else:
            print("  (no nginx: the burst through the proxy is left out)")
    finally:
        for server in servers:
            server.terminate()
            server.join(timeout=15)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
