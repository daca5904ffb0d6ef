"""A refused or malformed read/acknowledgement is refused on its own: the rest of its
group-committed batch is written.

The test holds the write path while the acknowledgements queue up, so that they land in
one batch together with the bad requests.
"""

from __future__ import annotations

import asyncio
import json

import httpx
from sqlalchemy import select

from messaging.models import DirectiveRecipient
from messaging.runtime import messaging_runtime
from server.demo import DemoCity
from tests.harness import RunningServer, eventually
from tests.messaging.support import audit_actions, directive_body, issue, token


async def test_bad_receipts_in_a_batch_fail_alone(server: RunningServer, city: DemoCity) -> None:
    standing = await token(server, "standing")
    issued = await issue(
        server,
        standing,
        directive_body(
            [city.root_unit_id],
            targets={"unit_ids": [city.root_unit_id], "include_descendants": True},
        ),
    )
    directive_id = issued["id"]
    now = server.ctx.clock.now()
    people = [*city.ward_user_ids, *city.delegate_ids][:15]
    wards = [server.ctx.tokens.issue(uid, now)[0] for uid in people]
    runtime = messaging_runtime(server.ctx)
    assert runtime is not None
    writer = runtime.writer

    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:

        async def post(who: str, path: str, body: dict[str, object]) -> httpx.Response:
            # json.dumps escapes a lone surrogate as \\ud800 (httpx would fail to encode it).
            return await http.post(
                path,
                content=json.dumps(body),
                headers={"Authorization": f"Bearer {who}", "Content-Type": "application/json"},
            )

        ack = f"/api/v1/directives/{directive_id}/ack"
        read = f"/api/v1/directives/{directive_id}/read"
        async with server.ctx.write():
            good = [
                asyncio.ensure_future(post(w, ack if i % 2 else read, {}))
                for i, w in enumerate(wards[:12])
            ]
            bad = [
                # A directive id no database can store.
                asyncio.ensure_future(post(wards[12], f"/api/v1/directives/{10**20}/ack", {})),
                # A note holding a lone surrogate.
                asyncio.ensure_future(post(wards[13], ack, {"note": "\ud800"})),
                # Not a recipient (the sender itself).
                asyncio.ensure_future(post(standing, ack, {})),
                # An unknown directive.
                asyncio.ensure_future(post(wards[14], f"/api/v1/directives/{2**31 - 1}/read", {})),
            ]
            await eventually(lambda: writer.waiting >= len(good) + 2, "every request queued")
        answers = await asyncio.gather(*good)
        refused = await asyncio.gather(*bad)
    assert [r.status_code for r in answers] == [200] * len(good), [
        r.text for r in answers if r.status_code != 200
    ]
    assert all(400 <= r.status_code < 500 for r in refused), [r.text for r in refused]
    # An id beyond 32 bits is refused before the batch, as every path id is.
    assert refused[0].json()["error"]["code"] == "invalid_id"
    assert refused[1].status_code == 400
    assert refused[2].json()["error"]["code"] == "not_a_recipient"
    assert refused[3].json()["error"]["code"] == "directive_not_found"
    async with server.ctx.read() as session:
        rows = {
            r.user_id: r
            for r in (
                await session.execute(
                    select(DirectiveRecipient).where(
                        DirectiveRecipient.directive_id == directive_id
                    )
                )
            ).scalars()
        }
    for i, uid in enumerate(people):
        row = rows[uid]
        if i < 12:
            assert row.read_at is not None
            assert (row.acknowledged_at is not None) == bool(i % 2)
        else:
            assert row.read_at is None and row.acknowledged_at is None
    assert len(await audit_actions(server, "directive.ack")) == 6
    assert len(await audit_actions(server, "directive.read")) == 6

    async def rolled_up() -> bool:
        async with server.http(standing) as client:
            summary = (await client.get(f"/api/v1/directives/{directive_id}/receipts")).json()
        return bool(summary["summary"]["acknowledged"] == 6 and summary["summary"]["read"] == 12)

    await eventually(rolled_up, "the roll-up at 6 acknowledged and 12 read")
