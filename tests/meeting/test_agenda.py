"""Agenda editing, presentation sync, and who may read the agenda's documents."""

from __future__ import annotations

from typing import Any

from server.files.service import may_read_file
from tests.meeting.conftest import Room, refused, store_pdf


async def principal(room: Room, user_id: int) -> Any:
    from server.auth.principal import Principal
    from server.org.models import User

    async with room.server.ctx.read() as session:
        user = await session.get(User, user_id)
    assert user is not None
    return Principal.of(user)


async def add(room: Room, title: str, **extra: Any) -> dict[str, Any]:
    response = await room.chair.post(room.base + "/agenda", json={"title": title, **extra})
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_agenda_tree_reorder_and_current(room: Room) -> None:
    doc = await store_pdf(room.server, room.city.chair_id, "Báo cáo", pages=3)
    first = await add(room, "Khai mạc", planned_minutes=10)
    second = await add(room, "Báo cáo kinh tế - xã hội", document_ids=[doc], planned_minutes=45)
    sub = await add(room, "Thẩm tra", parent_id=second["id"])
    response = await room.secretary.post(
        room.base + "/agenda", json={"title": "Bế mạc", "position": 0}
    )
    assert response.status_code == 201, response.text
    last = response.json()
    agenda = (await room.state(room.delegates[0]))["agenda"]
    assert [i["id"] for i in agenda] == [last["id"], first["id"], second["id"]]
    assert agenda[2]["children"][0]["id"] == sub["id"]
    assert agenda[2]["documents"][0]["pages"] == 3
    assert agenda[2]["planned_minutes"] == 45
    response = await room.chair.post(
        room.base + "/agenda/reorder", json={"item_ids": [first["id"], second["id"], last["id"]]}
    )
    assert response.status_code == 200, response.text
    assert [i["id"] for i in response.json()["agenda"]] == [first["id"], second["id"], last["id"]]
    response = await room.chair.patch(
        room.base + f"/agenda/{first['id']}",
        json={"title": "Khai mạc kỳ họp", "document_ids": [doc]},
    )
    assert response.status_code == 200, response.text
    assert response.json()["document_ids"] == [doc]
    response = await room.chair.post(
        room.base + "/agenda/current", json={"agenda_item_id": sub["id"]}
    )
    assert response.status_code == 200
    assert (await room.state())["current_agenda_item_id"] == sub["id"]
    # Removing an item removes its sub-items and clears the current item.
    response = await room.chair.delete(room.base + f"/agenda/{second['id']}")
    assert response.status_code == 204
    state = await room.state()
    assert [i["id"] for i in state["agenda"]] == [first["id"], last["id"]]
    assert [i["position"] for i in state["agenda"]] == [0, 1]
    assert state["current_agenda_item_id"] is None


async def test_participants_read_agenda_documents(room: Room) -> None:
    doc = await store_pdf(room.server, room.city.secretary_id, "Tờ trình", pages=2)
    delegate = await principal(room, room.delegate_ids[0])
    outsider = await principal(room, room.outsider_id)
    assert not await may_read_file(room.server.ctx, delegate, doc)
    response = await room.secretary.post(
        room.base + "/agenda", json={"title": "Tờ trình", "document_ids": [doc]}
    )
    assert response.status_code == 201, response.text
    assert await may_read_file(room.server.ctx, delegate, doc)
    assert not await may_read_file(room.server.ctx, outsider, doc)


BAD_AGENDA: list[tuple[str, str, dict[str, Any], int, str]] = [
    ("delegate", "/agenda", {"title": "X"}, 403, "not_officer"),
    ("guest", "/agenda", {"title": "X"}, 403, "not_officer"),
    ("outsider", "/agenda", {"title": "X"}, 404, "meeting_not_found"),
    ("chair", "/agenda", {"title": "X", "parent_id": 999999}, 422, "agenda_item_not_found"),
    ("chair", "/agenda", {"title": "X", "document_ids": [999999]}, 422, "unknown_attachment"),
    ("chair", "/agenda", {"title": "X", "document_ids": ["OTHERS"]}, 422, "unknown_attachment"),
    ("chair", "/agenda", {"title": ""}, 400, "invalid_request"),
    ("chair", "/agenda/reorder", {"item_ids": ["FIRST"]}, 422, "agenda_mismatch"),
    (
        "chair",
        "/agenda/reorder",
        {"item_ids": ["FIRST", "FIRST", "SECOND"]},
        422,
        "agenda_mismatch",
    ),
    ("chair", "/agenda/current", {"agenda_item_id": 999999}, 422, "agenda_item_not_found"),
    ("delegate", "/agenda/current", {"agenda_item_id": "FIRST"}, 403, "not_officer"),
]


async def test_bad_agenda_changes_change_nothing(room: Room) -> None:
    first = await add(room, "Một")
    second = await add(room, "Hai")
    private = await store_pdf(room.server, room.outsider_id, "Riêng", pages=1)
    names = {"FIRST": first["id"], "SECOND": second["id"], "OTHERS": private}

    def fill(value: Any) -> Any:
        if isinstance(value, list):
            return [fill(v) for v in value]
        return names.get(value, value) if isinstance(value, str) else value

    clients = {
        "delegate": room.delegates[0],
        "guest": room.guest,
        "chair": room.chair,
        "outsider": room.outsider,
    }
    for who, path, body, status, code in BAD_AGENDA:
        filled = {key: fill(value) for key, value in body.items()}
        await refused(room, clients[who], "post", path, filled, status, code)
    await refused(
        room,
        room.delegates[0],
        "patch",
        f"/agenda/{first['id']}",
        {"title": "X"},
        403,
        "not_officer",
    )
    await refused(
        room, room.delegates[0], "delete", f"/agenda/{first['id']}", None, 403, "not_officer"
    )
    await refused(room, room.chair, "delete", "/agenda/999999", None, 422, "agenda_item_not_found")


async def test_nesting_is_bounded(room: Room) -> None:
    parent = await add(room, "1")
    child = await add(room, "1.1", parent_id=parent["id"])
    grandchild = await add(room, "1.1.1", parent_id=child["id"])
    before = await room.state()
    response = await room.chair.post(
        room.base + "/agenda", json={"title": "1.1.1.1", "parent_id": grandchild["id"]}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "agenda_too_deep"
    assert await room.state() == before


async def test_presentation_follows_the_chair(room: Room) -> None:
    doc = await store_pdf(room.server, room.city.chair_id, "Báo cáo", pages=3)
    item = await add(room, "Báo cáo", document_ids=[doc])
    token = room.tokens["delegate001"]
    async with room.server.socket(token) as ws:
        seq = (await room.state(room.delegates[0]))["seq"]
        await ws.subscribe({f"meeting:{room.meeting_id}": seq})
        response = await room.chair.post(
            room.base + "/presentation",
            json={"agenda_item_id": item["id"], "document_id": doc, "page": 2},
        )
        assert response.status_code == 200, response.text
        event = await ws.next_event("presentation.changed")
        assert event["data"]["presentation"]["page"] == 2
        assert event["data"]["presentation"]["document_id"] == doc
    # A late tablet reads the page from the state.
    shown = (await room.state(room.delegates[1]))["presentation"]
    assert shown["page"] == 2 and shown["by"] == room.city.chair_id
    # A named presenter may turn pages too.
    response = await room.chair.post(
        room.base + "/presenter", json={"user_id": room.delegate_ids[1]}
    )
    assert response.status_code == 200
    response = await room.delegates[1].post(
        room.base + "/presentation",
        json={"agenda_item_id": item["id"], "document_id": doc, "page": 3},
    )
    assert response.status_code == 200, response.text


async def test_bad_presentations_change_nothing(room: Room) -> None:
    doc = await store_pdf(room.server, room.city.chair_id, "Báo cáo", pages=3)
    other = await store_pdf(room.server, room.city.chair_id, "Khác", pages=2)
    item = await add(room, "Báo cáo", document_ids=[doc])
    await add(room, "Khác", document_ids=[other])
    assert (
        await room.chair.post(
            room.base + "/presentation",
            json={"agenda_item_id": item["id"], "document_id": doc, "page": 1},
        )
    ).status_code == 200
    cases: list[tuple[Any, dict[str, Any], int, str]] = [
        (room.delegates[0], {}, 403, "not_presenter"),
        (room.secretary, {}, 403, "not_presenter"),
        (room.guest, {}, 403, "not_presenter"),
        (room.chair, {"page": 4}, 422, "page_out_of_range"),
        (room.chair, {"page": 0}, 400, "invalid_request"),
        (room.chair, {"document_id": other}, 422, "document_not_on_item"),
        (room.chair, {"agenda_item_id": 999999}, 422, "agenda_item_not_found"),
    ]
    for client, change, status, code in cases:
        body = {"agenda_item_id": item["id"], "document_id": doc, "page": 2, **change}
        await refused(room, client, "post", "/presentation", body, status, code)
    await refused(
        room,
        room.delegates[0],
        "post",
        "/presenter",
        {"user_id": room.delegate_ids[0]},
        403,
        "not_chair",
    )
    await refused(
        room,
        room.chair,
        "post",
        "/presenter",
        {"user_id": room.outsider_id},
        422,
        "not_a_participant",
    )


async def test_closed_meeting_is_read_only(room: Room) -> None:
    doc = await store_pdf(room.server, room.city.chair_id, "Báo cáo", pages=3)
    item = await add(room, "Báo cáo", document_ids=[doc])
    assert (await room.chair.post(room.base + "/close")).status_code == 200
    before = await room.state()
    for path, body in (
        ("/agenda", {"title": "X"}),
        ("/presentation", {"agenda_item_id": item["id"], "document_id": doc, "page": 1}),
        ("/agenda/current", {"agenda_item_id": item["id"]}),
    ):
        response = await room.chair.post(room.base + path, json=body)
        assert response.status_code == 409, response.text
        assert response.json()["error"]["code"] == "meeting_closed"
    assert await room.state() == before
