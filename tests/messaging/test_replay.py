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


async def _replayed(server: RunningServer, user_token: str, topic: str,
                    type: str) -> list[dict[str, Any]]:
    async with server.socket(user_token) as client:
        frames = await client.subscribe({topic: 0})
    return [f for f in frames if f.get("op") == "event" and f["type"] == type]


async def test_replay_of_a_directive_obeys_the_clearance_now(server: RunningServer,
                                                            city: DemoCity) -> None:
    committee = city.committee_unit_ids[0]
    reader_id = city.delegate_ids[0]  # delegates are cleared for "confidential"
    sent = await issue(server, await token(server, "standing"), directive_body(
        [committee], title="Phương án nhân sự", body="Nội dung mật",
        confidentiality="confidential"))
    reader = await token(server, "delegate001")
    topic = f"user:{reader_id}"
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
    assert [(e["id"], e["title"], e["restricted"]) for e in entries] == [
        (sent["id"], None, True)]
    # The log itself still holds the event as written, for the sender side's record.
    stored = await events_of(server, topic, "directive.issued")
    assert stored[0].data["directive"]["title"] == "Phương án nhân sự"
    assert await count_rows(server, EventRecord, EventRecord.topic == topic) >= 2
