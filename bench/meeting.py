"""Presentation sync at scale: a 500-delegate meeting, every tablet on a real socket.

The server runs as ``dienhong serve`` in its own process over a fresh data dir (SQLite,
in-process broker: the embedded default) seeded with the demo city at 500 delegates, whose
demo meeting has them all. Tablets are WebSocket clients spread over several client
processes (loopback only); each subscribes to ``meeting:{id}`` from the state's seq and
stamps (``time.monotonic()``, CLOCK_MONOTONIC, shared by every process on the machine)
every ``presentation.changed`` it receives. The chair turns the page over HTTP; a round's
latency per tablet is its stamp minus the moment the chair sent the request, and the
round is done when every tablet has the event.

Baseline, same run, same sockets: every tablet sends ``ping`` at once and times its
``pong`` (the cost of the sockets and loops alone, without the write path).

    python -m bench.meeting [--delegates 500] [--rounds 30] [--procs 4]
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
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

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
# Rounds whose figures are thrown away (connections and caches warming up).
WARMUP_ROUNDS = 3
# Pause between two page turns, so each round measures one broadcast, not a queue.
ROUND_GAP_SECS = 0.25
COLLECT_TIMEOUT_SECS = 30.0


# --- client processes --------------------------------------------------------------------


async def _tablet(
    url: str,
    token: str,
    topic: str,
    seq: int,
    stamps: list[float],
    pongs: list[float],
    sockets: list[Any],
    ready: asyncio.Event,
    changed: asyncio.Event,
    counter: list[int],
    total: int,
) -> None:
    from websockets.asyncio.client import connect

    async with connect(url, max_size=None, ping_interval=None) as ws:
        sockets.append(ws)
        await ws.send(json.dumps({"op": "auth", "token": token}))
        json.loads(await ws.recv())
        await ws.send(json.dumps({"op": "subscribe", "topics": {topic: seq}}))
        async for raw in ws:
            now = time.monotonic()
            message = json.loads(raw)
            op = message.get("op")
            if op == "event" and message.get("type") == "presentation.changed":
                stamps.append(now)
                changed.set()
            elif op == "pong":
                pongs.append(now)
                changed.set()
            elif op == "subscribed":
                counter[0] += 1
                if counter[0] == total:
                    ready.set()
            elif op == "error":
                raise RuntimeError(f"refused: {message}")


async def _wait_for(
    changed: asyncio.Event, lists: Sequence[list[float]], index: int, timeout: float
) -> None:
    """Wait until every list has an entry at ``index`` (or the timeout passes)."""
    end = time.monotonic() + timeout
    while not all(len(entries) > index for entries in lists):
        changed.clear()
        remaining = end - time.monotonic()
        if remaining <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), remaining)


def _client_main(pipe: Connection, url: str, tokens: list[str], topic: str, seq: int) -> None:
    asyncio.run(_client_loop(pipe, url, tokens, topic, seq))


async def _client_loop(pipe: Connection, url: str, tokens: list[str], topic: str, seq: int) -> None:
    stamps: list[list[float]] = [[] for _ in tokens]
    pongs: list[list[float]] = [[] for _ in tokens]
    sockets: list[list[Any]] = [[] for _ in tokens]
    ready = asyncio.Event()
    changed = asyncio.Event()
    counter = [0]
    tasks = []
    for index, token in enumerate(tokens):
        tasks.append(
            asyncio.create_task(
                _tablet(
                    url,
                    token,
                    topic,
                    seq,
                    stamps[index],
                    pongs[index],
                    sockets[index],
                    ready,
                    changed,
                    counter,
                    len(tokens),
                )
            )
        )
        if index % 50 == 49:
            # Handshakes in batches, within the server's accept backlog.
            await asyncio.sleep(0.05)
    await asyncio.wait_for(ready.wait(), 120)
    pipe.send(("ready", len(tokens)))
    while True:
        command = await asyncio.to_thread(pipe.recv)
        if command[0] == "collect":
            _, round_index, deadline = command
            await _wait_for(changed, stamps, round_index, deadline)
            pipe.send([s[round_index] if len(s) > round_index else None for s in stamps])
        elif command[0] == "ping":
            _, ping_index = command
            sent = []
            for ws in sockets:
                sent.append(time.monotonic())
                await ws[0].send('{"op":"ping"}')
            await _wait_for(changed, pongs, ping_index, COLLECT_TIMEOUT_SECS)
            pipe.send(
                [
                    p[ping_index] - t if len(p) > ping_index else None
                    for p, t in zip(pongs, sent, strict=True)
                ]
            )
        elif command[0] == "stop":
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            pipe.send("stopped")
            return


# --- the server ------------------------------------------------------------------------


async def seed(data_dir: Path, delegates: int) -> tuple[list[str], str, int]:
    """Demo city with ``delegates`` delegates; tokens of the delegates, the chair's, meeting id."""
    return await seed_demo_meeting(data_dir, delegates, PASSWORD)


# --- figures -----------------------------------------------------------------------------


def line(label: str, values_ms: Sequence[float]) -> str:
    return (
        f"{label:<44} p50 {percentile(values_ms, 0.5):7.1f} ms   "
        f"p99 {percentile(values_ms, 0.99):7.1f} ms   max {max(values_ms):7.1f} ms"
    )


async def run(args: argparse.Namespace) -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="dienhong-bench-meeting-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    procs: list[Any] = []
    server: subprocess.Popen[bytes] | None = None
    try:
        started = time.monotonic()
        tokens, chair_token, meeting_id = await seed(data_dir, args.delegates)
        print(
            f"seeded {args.delegates} delegates and the demo meeting "
            f"in {time.monotonic() - started:.1f} s"
        )
        server = start_server(data_dir, port)
        await wait_healthy(base, server)
        chair = httpx.AsyncClient(
            base_url=base, timeout=30, headers={"Authorization": f"Bearer {chair_token}"}
        )
        state = (await chair.get(f"/api/v1/meetings/{meeting_id}")).json()
        item = next(
            i for i in state["agenda"] if i["documents"] and (i["documents"][0]["pages"] or 0) >= 2
        )
        document = item["documents"][0]
        context = multiprocessing.get_context("spawn")
        pipes: list[Connection] = []
        shares = [tokens[i :: args.procs] for i in range(args.procs)]
        started = time.monotonic()
        for share in shares:
            parent, child = context.Pipe()
            proc = context.Process(
                target=_client_main,
                daemon=True,
                args=(
                    child,
                    base.replace("http", "ws") + "/ws",
                    share,
                    f"meeting:{meeting_id}",
                    state["seq"],
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

        round_ms: list[float] = []
        tablet_ms: list[float] = []
        request_ms: list[float] = []
        for round_index in range(args.rounds + WARMUP_ROUNDS):
            page = round_index % document["pages"] + 1
            sent = time.monotonic()
            response = await chair.post(
                f"/api/v1/meetings/{meeting_id}/presentation",
                json={"agenda_item_id": item["id"], "document_id": document["id"], "page": page},
            )
            answered = time.monotonic()
            if response.status_code != 200:
                raise RuntimeError(response.text[:300])
            stamps = [
                s
                for answer in await ask_all(pipes, ("collect", round_index, COLLECT_TIMEOUT_SECS))
                for s in answer
            ]
            missing = sum(1 for s in stamps if s is None)
            if missing:
                raise RuntimeError(f"round {round_index}: {missing} tablets never got the page")
            if round_index >= WARMUP_ROUNDS:
                latencies = [(s - sent) * 1000 for s in stamps if s is not None]
                tablet_ms.extend(latencies)
                round_ms.append(max(latencies))
                request_ms.append((answered - sent) * 1000)
            await asyncio.sleep(ROUND_GAP_SECS)

        # Baseline: the same tablets, ping/pong only.
        await chair.aclose()
        ping_ms: list[float] = []
        for ping_index in range(args.rounds):
            rtts = [r for answer in await ask_all(pipes, ("ping", ping_index)) for r in answer]
            ping_ms.extend(r * 1000 for r in rtts if r is not None)
            await asyncio.sleep(ROUND_GAP_SECS)
        print()
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"presentation sync, {connected} tablets, {args.rounds} rounds "
            f"(+{WARMUP_ROUNDS} warm-up), SQLite + in-process broker, "
            f"{os.cpu_count()} cores, load average {load}"
        )
        print(line("chair's POST /presentation answered", request_ms))
        print(line("page turn -> one tablet has it", tablet_ms))
        print(line("page turn -> every tablet has it (per round)", round_ms))
        print(line("baseline: every tablet pings at once (RTT)", ping_ms))
        target = "met" if percentile(round_ms, 0.99) < 100 else "NOT met"
        print(f"target p99 < 100 ms until every tablet has the page: {target}")
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
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--procs", type=int, default=4)
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
