"""The electorate is fixed when a poll opens: changing the participants while it is open
changes neither the base of the majority nor who may vote."""

from __future__ import annotations

from tests.harness import RunningServer
from tests.polls.conftest import build_assembly


async def test_removing_absent_members_while_open_does_not_flip_the_outcome(
    server: RunningServer,
) -> None:
    # 21 members: the chair, 12 present delegates, 8 absent ones.
    a = await build_assembly(server, delegates=12, absent=8)
    assert len(a.delegates) + len(a.absent) == 21
    poll = await a.open_poll(rule="majority_of_members")
    pid = poll["id"]
    for member in a.delegates[:9]:
        response = await a.vote(member, pid, "yes")
        assert response.status_code == 201, response.text
    # The chair removes the 8 absent delegates while the poll is open.
    for member in a.absent:
        response = await a.call(
            a.chair, "DELETE", f"/api/v1/meetings/{a.meeting_id}/participants/{member.id}"
        )
        assert response.status_code == 204, response.text
    view = await a.view(pid)
    assert {w["user_id"] for w in view["not_voted"]} == {
        *(m.id for m in a.delegates[9:]),
        *(m.id for m in a.absent),
    }
    assert (await a.close_poll(pid)).status_code == 200
    result = (await a.view(pid))["result"]
    # 9 yes of 21 members: 11 were needed when the poll opened, and still are.
    assert result["numbers"]["members"] == 21
    assert result["tally"]["yes"] == 9
    assert result["passed"] is False
    await a.close()


async def test_a_member_added_while_open_does_not_vote_in_that_poll(server: RunningServer) -> None:
    a = await build_assembly(server, delegates=4, absent=0)
    poll = await a.open_poll()
    pid = poll["id"]
    # The guest becomes a delegate while the poll is open.
    response = await a.call(
        a.chair,
        "PUT",
        f"/api/v1/meetings/{a.meeting_id}/participants/{a.guest.id}",
        {"role": "delegate"},
    )
    assert response.status_code == 200, response.text
    refused = await a.vote(a.guest, pid, "yes")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "not_in_electorate"
    assert (await a.vote(a.delegates[1], pid, "yes")).status_code == 201
    assert (await a.close_poll(pid)).status_code == 200
    result = (await a.view(pid))["result"]
    assert result["numbers"]["members"] == 5 and result["numbers"]["cast"] == 1
    # The next poll opens with the new member in its electorate.
    second = await a.open_poll()
    assert (await a.vote(a.guest, second["id"], "yes")).status_code == 201
    await a.close()
