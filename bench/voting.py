"""Voting at scale: 500 checked-in delegates cast their ballots within one second.

The server runs as ``dienhong serve`` in its own process over a fresh data dir (SQLite,
in-process broker: the embedded default) seeded with the demo city at 500 delegates; its
demo meeting is started and every delegate is checked in. Each tablet, in one of several
client processes (loopback only), holds a WebSocket subscribed to ``meeting:{id}`` and its
own keep-alive HTTP connection. Per round the chair opens a poll; the tablets send their
ballots spread evenly over one second (``--spread``), each timing its request; then the
chair closes the poll and every tablet stamps the moment ``poll.closed`` arrives
(``time.monotonic()``, CLOCK_MONOTONIC, shared by every process on the machine). A last
round sends all ballots at once (a burst) to show the capacity behind the one-second case.

Rounds: named poll, secret poll, secret poll again, then the burst (secret).

    python -m bench.voting [--delegates 500] [--procs 4] [--spread 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench.common import (
    ask_all,
    free_port,
    percentile,
    seed_demo_meeting,
    start_server,
    wait_healthy,
)

PASSWORD = "bench-password-1"
COLLECT_TIMEOUT_SECS = 30.0
# Quiet time between rounds, so one round's tail does not overlap the next.
ROUND_GAP_SECS = 0.5
TARGET_BALLOT_P99_MS = 250.0
TARGET_CLOSED_MS = 250.0


# --- client processes --------------------------------------------------------------------


class HttpConnection:
    """One tablet's keep-alive HTTP/1.1 connection (no pool: one request at a time)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, base: str) -> HttpConnection:
        parts = urlsplit(base)
        return cls(*await asyncio.open_connection(parts.hostname, parts.port))

    async def request(
        self, method: str, path: str, token: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        payload = b"" if body is None else json.dumps(body).encode()
        self.writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        await self.writer.drain()
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (header := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = header.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        data = await self.reader.readexactly(length) if length else b""
        return status, json.loads(data) if data else None


class Tablet:
    def __init__(self, token: str) -> None:
        self.token = token
        self.http: HttpConnection | None = None
        self.closed_at: dict[int, float] = {}


async def _follow(
    ws_url: str,
    tablet: Tablet,
    topic: str,
    seq: int,
    subscribed: list[int],
    total: int,
    ready: asyncio.Event,
    changed: asyncio.Event,
) -> None:
    from websockets.asyncio.client import connect

    async with connect(ws_url, max_size=None, ping_interval=None) as ws:
        await ws.send(json.dumps({"op": "auth", "token": tablet.token}))
        json.loads(await ws.recv())
        await ws.send(json.dumps({"op": "subscribe", "topics": {topic: seq}}))
        async for raw in ws:
            now = time.monotonic()
            message = json.loads(raw)
            op = message.get("op")
            if op == "event" and message.get("type") == "poll.closed":
                tablet.closed_at[int(message["data"]["poll_id"])] = now
                changed.set()
            elif op == "subscribed":
                subscribed[0] += 1
                if subscribed[0] == total:
                    ready.set()
            elif op == "error":
                raise RuntimeError(f"refused: {message}")


async def _vote(tablet: Tablet, poll_id: int, choice: str, at: float) -> tuple[int, float, str]:
    """One ballot at ``at`` (poll_id 0: the baseline, ``GET /api/v1/me`` instead)."""
    await asyncio.sleep(max(0.0, at - time.monotonic()))
    assert tablet.http is not None
    sent = time.monotonic()
    if poll_id == 0:
        status, body = await tablet.http.request("GET", "/api/v1/me", tablet.token)
        return status, (time.monotonic() - sent) * 1000, ""
    status, body = await tablet.http.request(
        "POST",
        f"/api/v1/polls/{poll_id}/ballots",
        tablet.token,
        {"choice": choice, "idempotency_key": uuid.uuid4().hex},
    )
    answered = time.monotonic()
    code = body.get("receipt", "") if status == 201 else body["error"]["code"]
    return status, (answered - sent) * 1000, code


def _client_main(
    pipe: Connection, base: str, tokens: list[str], topic: str, seq: int, offset: int, total: int
) -> None:
    asyncio.run(_client_loop(pipe, base, tokens, topic, seq, offset, total))


async def _client_loop(
    pipe: Connection, base: str, tokens: list[str], topic: str, seq: int, offset: int, total: int
) -> None:
    tablets = [Tablet(token) for token in tokens]
    ready, changed = asyncio.Event(), asyncio.Event()
    subscribed = [0]
    tasks = []
    ws_url = base.replace("http", "ws") + "/ws"
    for index, tablet in enumerate(tablets):
        tasks.append(
            asyncio.create_task(
                _follow(ws_url, tablet, topic, seq, subscribed, len(tablets), ready, changed)
            )
        )
        if index % 50 == 49:
            # Handshakes in batches, within the server's accept backlog.
            await asyncio.sleep(0.05)
    await asyncio.wait_for(ready.wait(), 120)
    pipe.send(("ready", len(tablets)))
    while True:
        command = await asyncio.to_thread(pipe.recv)
        if command[0] == "vote":
            _, poll_id, start, spread = command
            # Fresh keep-alive connections each round: the server closes idle ones after
            # its keep-alive timeout (5 s), and a tablet would reconnect the same way.
            for tablet in tablets:
                if tablet.http is not None:
                    tablet.http.writer.close()
            opened = await asyncio.gather(*(HttpConnection.open(base) for _ in tablets))
            for tablet, connection in zip(tablets, opened, strict=True):
                tablet.http = connection
            # This process's tablets hold every procs-th place in one even spread.
            slots = [
                start + spread * (offset + i * (total // len(tablets) or 1)) / total
                for i in range(len(tablets))
            ]
            choices = ["yes", "yes", "no", "abstain"]
            results = await asyncio.gather(
                *(
                    _vote(t, poll_id, choices[(offset + i) % 4], slot)
                    for i, (t, slot) in enumerate(zip(tablets, slots, strict=True))
                )
            )
            pipe.send(results)
        elif command[0] == "closed":
            _, poll_id = command
            end = time.monotonic() + COLLECT_TIMEOUT_SECS
            while not all(poll_id in t.closed_at for t in tablets) and time.monotonic() < end:
                changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), end - time.monotonic())
            pipe.send([t.closed_at.get(poll_id) for t in tablets])
        elif command[0] == "stop":
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            pipe.send("stopped")
            return


# --- the server ------------------------------------------------------------------------


async def seed(data_dir: Path, delegates: int) -> tuple[list[str], str, int]:
    """Demo city, its meeting started and every delegate checked in; tokens, chair, id."""
    return await seed_demo_meeting(data_dir, delegates, PASSWORD, in_session=True)


# --- figures -----------------------------------------------------------------------------


async def one_round(
    chair: httpx.AsyncClient,
    pipes: Sequence[Connection],
    meeting_id: int,
    *,
    secret: bool,
    spread: float,
    label: str,
) -> dict[str, Any]:
    response = await chair.post(
        f"/api/v1/meetings/{meeting_id}/polls",
        json={"title": f"Biểu quyết thử ({label})", "secret": secret},
    )
    poll_id = response.json()["id"]
    assert (await chair.post(f"/api/v1/polls/{poll_id}/open")).status_code == 200
    # Time for every client process to open its connections before the first ballot.
    start = time.monotonic() + 1.5
    answers = [r for part in await ask_all(pipes, ("vote", poll_id, start, spread)) for r in part]
    statuses = [status for status, _, _ in answers]
    latencies = [ms for _, ms, _ in answers]
    finished = time.monotonic()
    await asyncio.sleep(ROUND_GAP_SECS)
    close_sent = time.monotonic()
    closed = await chair.post(f"/api/v1/polls/{poll_id}/close")
    close_answered = time.monotonic()
    stamps = [s for part in await ask_all(pipes, ("closed", poll_id)) for s in part]
    missing = sum(1 for s in stamps if s is None)
    result = closed.json()
    view = (await chair.get(f"/api/v1/polls/{poll_id}")).json()
    accepted = statuses.count(201)
    return {
        "label": label,
        "accepted": accepted,
        "sent": len(answers),
        "refused": sorted({code for status, _, code in answers if status != 201}),
        "ballots_per_sec": accepted / max(1e-9, finished - start),
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies),
        "close_answer_ms": (close_answered - close_sent) * 1000,
        "closed_all_ms": (max(s for s in stamps if s is not None) - close_sent) * 1000,
        "closed_p50_ms": percentile([(s - close_sent) * 1000 for s in stamps if s], 0.5),
        "missing": missing,
        "tally_cast": view["cast"],
        "state": result.get("state"),
    }


async def baseline_round(pipes: Sequence[Connection], spread: float) -> dict[str, Any]:
    """The same tablets and connections, ``GET /api/v1/me`` (authentication, no write)."""
    start = time.monotonic() + 1.5
    answers = [r for part in await ask_all(pipes, ("vote", 0, start, spread)) for r in part]
    latencies = [ms for _, ms, _ in answers]
    return {
        "label": "baseline: GET /me, 1 s",
        "sent": len(answers),
        "ok": sum(1 for status, _, _ in answers if status == 200),
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies),
    }


def report(rounds: Sequence[dict[str, Any]], tablets: int, baseline: dict[str, Any]) -> None:
    print()
    print(
        f"voting, {tablets} checked-in tablets (WebSocket + keep-alive HTTP each), "
        f"SQLite + in-process broker, {os.cpu_count()} cores"
    )
    print(
        f"{'round':<22}{'accepted':>10}{'ballots/s':>11}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'max ms':>9}{'close->all poll.closed ms':>28}"
    )
    for r in rounds:
        print(
            f"{r['label']:<22}{r['accepted']:>6}/{r['sent']:<3}{r['ballots_per_sec']:>11.0f}"
            f"{r['p50']:>9.1f}{r['p99']:>9.1f}{r['max']:>9.1f}{r['closed_all_ms']:>28.1f}"
        )
    print(
        f"{baseline['label']:<22}{baseline['ok']:>6}/{baseline['sent']:<3}{'':>11}"
        f"{baseline['p50']:>9.1f}{baseline['p99']:>9.1f}{baseline['max']:>9.1f}"
    )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine load average (1, 5, 15 min) at the end: {load}")
    spread = [r for r in rounds if not r["label"].startswith("burst")]
    all_in = all(r["accepted"] == r["sent"] == r["tally_cast"] and not r["missing"] for r in rounds)
    worst_p99 = max(r["p99"] for r in spread)
    worst_close = max(r["closed_all_ms"] for r in spread)
    print(
        f"every ballot accepted and counted, every tablet got poll.closed: "
        f"{'yes' if all_in else 'NO'}"
    )
    print(
        f"target p99 ballot latency < {TARGET_BALLOT_P99_MS:.0f} ms (1-second rounds): "
        f"{'met' if worst_p99 < TARGET_BALLOT_P99_MS else 'NOT met'} ({worst_p99:.1f} ms)"
    )
    print(
        f"target result on every tablet < {TARGET_CLOSED_MS:.0f} ms after close: "
        f"{'met' if worst_close < TARGET_CLOSED_MS else 'NOT met'} ({worst_close:.1f} ms)"
    )


async def run(args: argparse.Namespace) -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="dienhong-bench-voting-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    procs: list[Any] = []
    server: subprocess.Popen[bytes] | None = None
    try:
        started = time.monotonic()
        tokens, chair_token, meeting_id = await seed(data_dir, args.delegates)
        print(
            f"seeded {args.delegates} delegates, meeting started, all checked in, "
            f"in {time.monotonic() - started:.1f} s"
        )
        server = start_server(data_dir, port)
        await wait_healthy(base, server)
        chair = httpx.AsyncClient(
            base_url=base, timeout=60, headers={"Authorization": f"Bearer {chair_token}"}
        )
        state = (await chair.get(f"/api/v1/meetings/{meeting_id}")).json()
        context = multiprocessing.get_context("spawn")
        pipes: list[Connection] = []
        started = time.monotonic()
        for index in range(args.procs):
            parent, child = context.Pipe()
            proc = context.Process(
                target=_client_main,
                daemon=True,
                args=(
                    child,
                    base,
                    tokens[index :: args.procs],
                    f"meeting:{meeting_id}",
                    state["seq"],
                    index,
                    len(tokens),
                ),
            )
            proc.start()
            child.close()
            pipes.append(parent)
            procs.append(proc)
        answers = [await asyncio.to_thread(p.recv) for p in pipes]
        connected = sum(a[1] for a in answers)
        print(
            f"{connected} tablets connected and subscribed over {args.procs} client "
            f"processes in {time.monotonic() - started:.1f} s"
        )
        rounds = []
        for label, secret, spread in (
            ("named, 1 s", False, args.spread),
            ("secret, 1 s", True, args.spread),
            ("secret, 1 s (again)", True, args.spread),
            ("burst, all at once", True, 0.0),
        ):
            rounds.append(
                await one_round(chair, pipes, meeting_id, secret=secret, spread=spread, label=label)
            )
            await asyncio.sleep(ROUND_GAP_SECS)
        baseline = await baseline_round(pipes, args.spread)
        await chair.aclose()
        report(rounds, connected, baseline)
        await ask_all(pipes, ("stop",))
        return 0
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
        if server is not None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(data_dir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delegates", type=int, default=500)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument(
        "--spread",
        type=float,
        default=1.0,
        help="seconds over which the ballots of a round are sent",
    )
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
