"""A refused or malformed ballot is refused on its own: the rest of its batch is written.

The test holds the write path while the ballots queue up, so that they all land in one
group-committed batch together with the bad requests.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter

import httpx

from meeting.polls.runtime import poll_runtime
from tests.harness import RunningServer, eventually
from tests.polls.conftest import build_assembly, stored


async def test_bad_ballots_in_a_batch_fail_alone(server: RunningServer) -> None:
    a = await build_assembly(server, delegates=20, absent=0)
    poll = await a.open_poll(secret=True)
    pid = poll["id"]
    box = poll_runtime(server.ctx).box

    async def ballot(
        member_token: str, poll_id: int | str, body: dict[str, object]
    ) -> httpx.Response:
        # json.dumps escapes a lone surrogate as \\ud800 (httpx would fail to encode it).
        return await a.http.post(
            f"/api/v1/polls/{poll_id}/ballots",
            content=json.dumps(body),
            headers={"Authorization": f"Bearer {member_token}", "Content-Type": "application/json"},
        )

    def good(i: int) -> dict[str, object]:
        return {"choice": "yes" if i % 3 else "no", "idempotency_key": uuid.uuid4().hex}

    async with server.ctx.write():
        # While the write path is held, the first ballot the writer takes waits inside it
        # and the others queue behind it: they form one batch with the bad ones.
        tasks = [
            asyncio.ensure_future(ballot(m.token, pid, good(i))) for i, m in enumerate(a.delegates)
        ]
        bad = [
            # A poll id no database can store.
            asyncio.ensure_future(ballot(a.outsider.token, 10**20, good(0))),
            # Someone without a seat in the meeting.
            asyncio.ensure_future(ballot(a.outsider.token, pid, good(0))),
            # A guest (a seat, but no vote).
            asyncio.ensure_future(ballot(a.guest.token, pid, good(0))),
            # A lone surrogate in the key.
            asyncio.ensure_future(
                ballot(a.secretary.token, pid, {"choice": "yes", "idempotency_key": "\ud800" * 20})
            ),
        ]
        await eventually(lambda: box.waiting >= len(a.delegates) + 2, "every ballot queued")
    answers = await asyncio.gather(*tasks)
    refused = await asyncio.gather(*bad)
    assert [r.status_code for r in answers] == [201] * len(a.delegates), [
        r.text for r in answers if r.status_code != 201
    ]
    statuses = [r.status_code for r in refused]
    assert all(400 <= s < 500 for s in statuses), [r.text for r in refused]
    # An id beyond 32 bits is refused before the batch, as every path id is.
    assert [r.json()["error"]["code"] for r in refused[:3]] == [
        "invalid_id",
        "not_a_participant",
        "no_vote",
    ]
    assert refused[3].status_code == 400
    assert (await a.close_poll(pid)).status_code == 200
    view = await a.view(pid)
    expected = Counter("yes" if i % 3 else "no" for i in range(len(a.delegates)))
    assert view["result"]["numbers"]["cast"] == len(a.delegates)
    assert view["result"]["tally"]["yes"] == expected["yes"]
    assert view["result"]["tally"]["no"] == expected["no"]
    after = await stored(server, pid)
    assert len(after["voters"]) == len(after["ballots"]) == len(a.delegates)
    await a.close()
