"""What the log replays obeys the visibility rules at reading time.

* A directive replayed on ``user:{id}`` after the reader's clearance was lowered shows
  what REST shows (the inbox entry without title, body or attachments), at its seq.
* Edits carry only the new text; a retracted message's events replay as its tombstone;
  REST keeps the history for the channel's members.
"""

from __future__ import annotations

from typing import Any

from messaging.models import MessageVersion
from server.demo import DemoCity
from server.realtime.models import EventRecord
from tests.harness import RunningServer
from tests.messaging.support import count_rows, directive_body, events_of, issue, token


async def _replayed(
    server: RunningServer, user_token: str, topic: str, type: str
) -> list[dict[str, Any]]:
    async with server.socket(user_token) as client:
        frames = await client.subscribe({topic: 0})
    return [f for f in frames if f.get("op") == "event" and f["type"] == type]


async def test_replay_of_a_directive_obeys_the_clearance_now(
    server: RunningServer, city: DemoCity
) -> None:
    committee = city.committee_unit_ids[0]
    reader_id = city.delegate_ids[0]  # delegates are cleared for "confidential"
    sent = await issue(
        server,
        await token(server, "standing"),
        directive_body(
            [committee],
            title="Phương án nhân sự",
            body="Nội dung mật",
            confidentiality="confidential",
        ),
    )
    reader = await token(server, "delegate001")
    topic = f"user:{reader_id}"
    async with server.http(reader) as http:
        replied = await http.post(
            f"/api/v1/directives/{sent['id']}/replies", json={"body": "Báo cáo mật của ban"}
        )
        assert replied.status_code == 201, replied.text
    assert [
        e["data"]["reply"]["body"]
        for e in await _replayed(server, reader, topic, "directive.reply")
    ] == ["Báo cáo mật của ban"]
    before = await _replayed(server, reader, topic, "directive.issued")
    assert [e["data"]["directive"]["title"] for e in before] == ["Phương án nhân sự"]
    seq = before[0]["seq"]

    async with server.socket(reader) as open_socket:
        async with server.http(await token(server, "admin")) as http:
            lowered = await http.patch(f"/api/v1/users/{reader_id}", json={"clearance": "none"})
            assert lowered.status_code == 200, lowered.text
        await open_socket.next_event("user.updated")
        # A socket open across the change replays as the user is now...
        frames = await open_socket.subscribe({topic: 0})
    again = [f for f in frames if f.get("type") == "directive.issued"]
    # ...and so does a new one.
    after = await _replayed(server, reader, topic, "directive.issued")
    replies = await _replayed(server, reader, topic, "directive.reply")
    assert [(e["data"]["reply"]["body"], e["data"]["restricted"]) for e in replies] == [
        (None, True)
    ]
    assert "Báo cáo mật" not in str(replies)
    for replayed in (again, after):
        assert [e["seq"] for e in replayed] == [seq]
        shown = replayed[0]["data"]["directive"]
        assert shown["id"] == sent["id"] and shown["restricted"] is True
        assert shown["title"] is None
        assert "body" not in shown and "attachments" not in shown
        assert "Nội dung mật" not in str(replayed)
    async with server.http(reader) as http:
        refused = await http.get(f"/api/v1/directives/{sent['id']}")
        inbox = await http.get("/api/v1/directives", params={"box": "inbox"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "insufficient_clearance"
    listed = inbox.json()
    entries = listed["directives"] if isinstance(listed, dict) else listed
    assert [(e["id"], e["title"], e["restricted"]) for e in entries] == [(sent["id"], None, True)]
    # The log itself still holds the event as written, for the sender side's record.
    stored = await events_of(server, topic, "directive.issued")
    assert stored[0].data["directive"]["title"] == "Phương án nhân sự"
    assert await count_rows(server, EventRecord, EventRecord.topic == topic) >= 2


async def test_edited_and_retracted_text_leaves_the_log(
    server: RunningServer, city: DemoCity
) -> None:
    author = await token(server, "delegate001")
    async with server.http(author) as http:
        channels = (await http.get("/api/v1/channels")).json()["channels"]
        cid = next(c["id"] for c in channels if c["kind"] == "unit")
        base = f"/api/v1/channels/{cid}/messages"
        kept = (
            await http.post(base, json={"body": "Bản 0 " + "a" * 4000, "client_msg_id": "k"})
        ).json()
        gone = (
            await http.post(base, json={"body": "Nói nhầm bí mật", "client_msg_id": "g"})
        ).json()
        for version in range(1, 13):
            edited = await http.patch(
                f"{base}/{kept['id']}", json={"body": f"Bản {version} " + "a" * 4000}
            )
            assert edited.status_code == 200, edited.text
        retracted = await http.delete(f"{base}/{gone['id']}")
        assert retracted.status_code == 200, retracted.text
        history = (await http.get(base)).json()["messages"]
    topic = f"channel:{cid}"
    stored = await events_of(server, topic)
    texts = " ".join(str(e.data) for e in stored)
    # Only the current text of the edited message is in the log; none of the retracted one.
    assert "Nói nhầm" not in texts
    assert all(f"Bản {v} " not in texts for v in range(12)) and "Bản 12 " in texts
    edits = [e for e in stored if e.type == "message.edited"]
    assert len(edits) == 12
    # Each edit carries one text, not every earlier one (60 edits of 16 KB made 30 MB).
    assert all(len(str(e.data)) < 2 * 4000 for e in edits)
    assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
    # A replay from 0 shows the tombstone at the retracted message's seq.
    async with server.socket(author) as client:
        frames = await client.subscribe({topic: 0})
    posted = {f["data"]["message"]["id"]: f for f in frames if f.get("type") == "message.posted"}
    assert posted[gone["id"]]["seq"] == gone["seq"]
    assert posted[gone["id"]]["data"]["message"]["state"] == "retracted"
    assert posted[gone["id"]]["data"]["message"]["body"] is None
    assert posted[kept["id"]]["data"]["message"]["body"].startswith("Bản 12 ")
    # REST keeps the history of the edited message for the channel's members.
    by_id = {m["id"]: m for m in history}
    assert [v["body"][:6] for v in by_id[kept["id"]]["versions"]] == [
        f"Bản {v} "[:6] for v in range(12)
    ]
    assert await count_rows(server, MessageVersion) == 13
