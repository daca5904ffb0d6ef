"""The convergence test: the state at any point plus the events after its seq == the end state.

A scripted session (start, agenda changes, presentation, check-ins, a vote, speakers with
their timer, adjournment, participants added and removed) runs while another task keeps
fetching the state. Every state fetched, at a quiet moment or racing a change, replayed
forward with the events after its ``seq`` by the reducer the pages ship
(``web_client/static/js/meeting-state.js``, run in Chromium), must equal the state fetched
at the end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from server.clock import ManualClock
from server.demo import seed_demo
from tests.browser.conftest import WAIT_MS, browser  # noqa: F401 (the fixture)
from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.harness import eventually
from tests.meeting.conftest import Room, make_room, store_pdf

pytestmark = pytest.mark.browser

# Runs in the page: the shipped reducer applied to each (state, events after its seq).
REPLAY_JS = """async (runs) => {
  const { MeetingSession, initialState } = await import("/app/js/meeting-state.js");
  return runs.map(([state, events]) => {
    const session = new MeetingSession(state.id, { realtime: { follow() {} } });
    session.state = initialState(state);
    for (const event of events) session.apply(event);
    return session.state;
  });
}"""


async def ok(response: Awaitable[httpx.Response]) -> dict[str, Any]:
    result = await response
    assert result.is_success, result.text
    return result.json() if result.content else {}


async def script(room: Room, clock: ManualClock, checkpoint: Callable[[], Awaitable[None]]) -> None:
    base, chair, d = room.base, room.chair, room.delegates
    docs = [
        await store_pdf(room.server, room.city.chair_id, f"Tài liệu {n}", pages=4) for n in (1, 2)
    ]
    steps: list[Callable[[], Awaitable[Any]]] = []

    async def add(title: str, **extra: Any) -> dict[str, Any]:
        return await ok(chair.post(base + "/agenda", json={"title": title, **extra}))

    items: list[dict[str, Any]] = []
    speakers: list[dict[str, Any]] = []

    async def s_agenda() -> None:
        items.append(await add("Khai mạc", planned_minutes=10))
        items.append(await add("Báo cáo", document_ids=[docs[0]], planned_minutes=40))
        items.append(await add("Thẩm tra", parent_id=items[1]["id"], document_ids=[docs[1]]))
        items.append(await add("Bế mạc"))

    async def s_reorder() -> None:
        await ok(
            room.secretary.post(
                base + "/agenda/reorder",
                json={"item_ids": [items[1]["id"], items[0]["id"], items[3]["id"]]},
            )
        )
        await ok(chair.post(base + "/agenda/current", json={"agenda_item_id": items[1]["id"]}))

    async def s_present() -> None:
        for page in (1, 2, 3):
            await ok(
                chair.post(
                    base + "/presentation",
                    json={"agenda_item_id": items[1]["id"], "document_id": docs[0], "page": page},
                )
            )

    async def s_attendance() -> None:
        for client in d[:3]:
            await ok(client.post(base + "/attendance", json={"present": True}))
        await ok(
            room.secretary.post(
                base + "/attendance",
                json={"present": False, "user_id": room.delegate_ids[3], "reason": "Ốm"},
            )
        )
        await ok(room.guest.post(base + "/attendance", json={"present": True}))

    async def s_speakers() -> None:
        speakers.append(await ok(d[0].post(base + "/speakers", json={"kind": "speech"})))
        speakers.append(await ok(d[1].post(base + "/speakers", json={"kind": "question"})))
        speakers.append(await ok(d[2].post(base + "/speakers", json={"kind": "point_of_order"})))
        await ok(chair.post(base + f"/speakers/{speakers[2]['id']}/grant"))

    async def until_current(flag: str) -> None:
        # The timer writes in the background once the clock moved: wait for its result.
        async def is_set() -> bool:
            current = (await room.state())["speakers"]["current"]
            return bool(current and current[flag])

        await eventually(is_set, f"the timer setting {flag}", timeout=5)

    async def s_timer() -> None:
        await clock.advance(65)
        await until_current("warned")

    async def s_more_speakers() -> None:
        await ok(chair.post(base + f"/speakers/{speakers[2]['id']}/finish"))
        await ok(
            chair.post(
                base + "/speakers/reorder",
                json={"speaker_ids": [speakers[1]["id"], speakers[0]["id"]]},
            )
        )
        await ok(d[1].delete(base + f"/speakers/{speakers[1]['id']}"))
        await ok(chair.post(base + f"/speakers/{speakers[0]['id']}/grant"))

    async def s_time_up() -> None:
        await clock.advance(91)
        await until_current("time_up")

    async def s_vote() -> None:
        created = await ok(
            chair.post(
                base + "/polls",
                json={
                    "title": "Thông qua chương trình",
                    "kind": "yes_no_abstain",
                    "secret": True,
                    "rule": "majority_of_members",
                },
            )
        )
        poll = f"/api/v1/polls/{created['id']}"
        await ok(chair.post(poll + "/open"))
        for n, client in enumerate(d[:3]):
            await ok(
                client.post(
                    poll + "/ballots",
                    json={
                        "choice": ["yes", "no", "yes"][n],
                        "idempotency_key": f"convergence-ballot-{n:04d}",
                    },
                )
            )
        await ok(chair.post(poll + "/close"))

    async def s_adjourn() -> None:
        await ok(chair.post(base + "/adjourn"))
        await ok(
            chair.patch(
                base, json={"place": "Hội trường B", "quorum": {"numerator": 1, "denominator": 2}}
            )
        )
        await ok(chair.post(base + "/start"))

    async def s_edit() -> None:
        await ok(
            chair.patch(
                base + f"/agenda/{items[0]['id']}",
                json={"title": "Khai mạc kỳ họp", "document_ids": [docs[1]]},
            )
        )
        await ok(chair.post(base + "/presenter", json={"user_id": room.delegate_ids[0]}))
        await ok(
            d[0].post(
                base + "/presentation",
                json={"agenda_item_id": items[0]["id"], "document_id": docs[1], "page": 4},
            )
        )
        await ok(chair.delete(base + f"/agenda/{items[1]['id']}"))
        await ok(d[0].post(base + "/attendance", json={"present": False}))
        await ok(
            room.secretary.put(base + f"/participants/{room.outsider_id}", json={"role": "guest"})
        )
        await ok(chair.put(base + f"/participants/{room.delegate_ids[2]}", json={"role": "guest"}))
        await ok(chair.delete(base + f"/participants/{room.outsider_id}"))

    steps = [
        s_agenda,
        s_reorder,
        s_present,
        s_attendance,
        s_vote,
        s_speakers,
        s_timer,
        s_more_speakers,
        s_time_up,
        s_adjourn,
        s_edit,
    ]
    await checkpoint()
    await ok(chair.post(base + "/start"))
    for step in steps:
        await checkpoint()
        await step()
    await checkpoint()


async def events_after(room: Room, seq: int) -> list[dict[str, Any]]:
    async with room.server.socket(room.tokens["delegate001"]) as ws:
        frames = await ws.subscribe({f"meeting:{room.meeting_id}": seq})
    return [f for f in frames if f["op"] == "event"]


async def replay(
    server_url: str,
    browser: Any,  # noqa: F811 (the fixture's value)
    runs: list[tuple[dict[str, Any], list[dict[str, Any]]]],
) -> list[Any]:
    """Each state with its events through the page's reducer, in Chromium."""
    context = await browser.new_context()
    try:
        page = await context.new_page()
        page.set_default_timeout(WAIT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(server_url + "/app/")
        states: list[Any] = await page.evaluate(REPLAY_JS, runs)
        assert errors == []
        return states
    finally:
        await context.close()


async def test_state_plus_events_converges(make_server: MakeServer, browser: Any) -> None:  # noqa: F811
    clock = ManualClock()
    server = await make_server(clock=clock)
    city, _ = await seed_demo(server.ctx, password=DEMO_PASSWORD, communes=2, delegates=6)
    rooms = make_room(server, city, speech_limit_secs=90)
    room = await rooms.__anext__()
    viewer = room.delegates[4] if len(room.delegates) > 4 else room.delegates[3]
    snapshots: list[dict[str, Any]] = []
    done = asyncio.Event()

    async def checkpoint() -> None:
        snapshots.append(await room.state(viewer))

    async def racing_reader() -> None:
        # States fetched while changes are being written.
        while not done.is_set():
            snapshots.append(await room.state(viewer))
            await asyncio.sleep(0.005)

    try:
        reader = asyncio.create_task(racing_reader())
        await script(room, clock, checkpoint)
        done.set()
        await reader
        final = await room.state(viewer)
        assert final["speakers"]["totals"] and final["presentation"]["page"] == 4
        seqs = sorted({s["seq"] for s in snapshots})
        assert len(seqs) > 10, "the script should give many different points to start from"
        runs = [(snapshot, await events_after(room, snapshot["seq"])) for snapshot in snapshots]
        # The reducer keeps the state's shape: the end state as the page holds it.
        [expected] = await replay(server.url, browser, [(final, [])])
        for snapshot, state in zip(snapshots, await replay(server.url, browser, runs), strict=True):
            assert state == expected, f"diverged from the state at seq {snapshot['seq']}"
        # The script went through every kind of event a tablet must follow.
        types = {e["type"] for e in await events_after(room, 0)}
        assert {
            "speaker.warning",
            "speaker.time_up",
            "speaker.started",
            "speaker.finished",
            "speakers.reordered",
            "speaker.withdrawn",
            "meeting.updated",
            "presenter.changed",
            "agenda.current_changed",
            "participants.changed",
            "attendance.changed",
            "poll.created",
            "poll.opened",
            "poll.progress",
            "poll.closed",
        } <= types
    finally:
        done.set()
        await rooms.aclose()
