"""Units and users through the admin endpoints: permissions, bad input, events, audit."""

from __future__ import annotations

from typing import Any

import pytest
import websockets
from sqlalchemy import func, select

from server.demo import DemoCity
from server.org.models import Unit, User
from tests.conftest import DEMO_PASSWORD
from tests.harness import RunningServer
from tests.server.support import audit_actions


async def counts(server: RunningServer) -> tuple[int, int, int]:
    async with server.ctx.read() as session:
        units = (await session.execute(select(func.count()).select_from(Unit))).scalar_one()
        users = (await session.execute(select(func.count()).select_from(User))).scalar_one()
    return int(units), int(users), len(await audit_actions(server))


async def test_tree_members_and_me(server: RunningServer, city: DemoCity) -> None:
    token = await server.login("ward001", DEMO_PASSWORD)
    async with server.http(token) as client:
        units = (await client.get("/api/v1/units")).json()["units"]
        members = (await client.get(f"/api/v1/units/{city.commune_unit_ids[0]}/members")).json()[
            "members"
        ]
        missing = await client.get("/api/v1/units/99999/members")
        bad_id = await client.get("/api/v1/units/abc/members")
    assert len(units) == 3 + 4 + 6
    roots = [u for u in units if u["parent_id"] is None]
    assert [r["id"] for r in roots] == [city.root_unit_id]
    assert set(units[0]) == {"id", "name", "kind", "parent_id"}
    assert [m["username"] for m in members] == ["ward001"]
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unit_not_found"
    assert bad_id.status_code == 400 and bad_id.json()["error"]["code"] == "invalid_id"


async def test_admin_creates_units_and_users(server: RunningServer, city: DemoCity) -> None:
    admin = await server.login("admin", DEMO_PASSWORD)
    async with server.http(admin) as client:
        unit = await client.post(
            "/api/v1/units",
            json={"name": "Phường Điện Biên", "kind": "ward", "parent_id": city.root_unit_id},
        )
        assert unit.status_code == 201, unit.text
        unit_id = unit.json()["id"]
        user = await client.post(
            "/api/v1/users",
            json={
                "username": "dienbien.staff",
                "display_name": "Lê Thị Hoa",
                "unit_id": unit_id,
                "roles": ["staff"],
                "clearance": "confidential",
                "password": "a-long-password",
            },
        )
        assert user.status_code == 201, user.text
        assert user.json()["unit_id"] == unit_id
        assert user.json()["clearance"] == "confidential"
        assert "password" not in user.json() and "password_hash" not in user.json()
    token = await server.login("dienbien.staff", "a-long-password")
    async with server.http(token) as client:
        me = (await client.get("/api/v1/me")).json()
    assert me["unit"] == {
        "id": unit_id,
        "name": "Phường Điện Biên",
        "kind": "ward",
        "parent_id": city.root_unit_id,
    }
    actions = await audit_actions(server)
    assert ("unit.create", f"unit:{unit_id}") in actions
    assert ("user.create", f"user:{user.json()['id']}") in actions


async def test_only_admins_change_the_organisation(server: RunningServer, city: DemoCity) -> None:
    before = await counts(server)
    for username in ("standing", "chair", "ward001"):
        token = await server.login(username, DEMO_PASSWORD)
        async with server.http(token) as client:
            responses = [
                await client.post(
                    "/api/v1/units",
                    json={"name": "X", "kind": "ward", "parent_id": city.root_unit_id},
                ),
                await client.post(
                    "/api/v1/users",
                    json={
                        "username": "sneaky",
                        "display_name": "S",
                        "unit_id": city.root_unit_id,
                        "roles": ["admin"],
                        "password": "a-long-password",
                    },
                ),
                await client.patch(
                    f"/api/v1/users/{city.ward_user_ids[0]}", json={"roles": ["admin"]}
                ),
                await client.patch(f"/api/v1/units/{city.root_unit_id}", json={"name": "Y"}),
            ]
        for response in responses:
            assert response.status_code == 403, (username, response.text)
            assert response.json()["error"]["code"] == "forbidden"
    units, users, audits = await counts(server)
    assert (units, users) == before[:2]
    # Logins plus one audited refusal per forbidden request.
    refusals = [a for a in await audit_actions(server) if a[0] == "access.refused"]
    assert len(refusals) == 12
    assert audits == before[2] + 3 + 12


async def test_bad_unit_and_user_input_stores_nothing(
    server: RunningServer, city: DemoCity
) -> None:
    admin = await server.login("admin", DEMO_PASSWORD)
    before = await counts(server)
    root = city.root_unit_id
    cases: list[tuple[str, str, Any, int, str]] = [
        (
            "POST",
            "/api/v1/units",
            {"name": "X", "kind": "castle", "parent_id": root},
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/api/v1/units",
            {"name": "", "kind": "ward", "parent_id": root},
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/api/v1/units",
            {"name": "X" * 201, "kind": "ward", "parent_id": root},
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/api/v1/units",
            {"name": "X", "kind": "ward", "parent_id": 99999},
            404,
            "unit_not_found",
        ),
        ("POST", "/api/v1/units", {"name": "Second root", "kind": "ward"}, 422, "root_exists"),
        (
            "POST",
            "/api/v1/units",
            {"name": "X", "kind": "ward", "parent_id": [1]},
            400,
            "invalid_request",
        ),
        (
            "PATCH",
            f"/api/v1/units/{root}",
            {"parent_id": city.commune_unit_ids[0]},
            422,
            "unit_cycle",
        ),
        ("PATCH", "/api/v1/units/99999", {"name": "Y"}, 404, "unit_not_found"),
        (
            "POST",
            "/api/v1/users",
            {
                "username": "ward001",
                "display_name": "Dup",
                "unit_id": root,
                "password": "a-long-password",
            },
            409,
            "username_taken",
        ),
        (
            "POST",
            "/api/v1/users",
            {"username": "has space", "display_name": "S", "unit_id": root},
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/api/v1/users",
            {"username": "newbie", "display_name": "S", "unit_id": root, "roles": ["emperor"]},
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/api/v1/users",
            {"username": "newbie", "display_name": "S", "unit_id": root, "clearance": "cosmic"},
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/api/v1/users",
            {"username": "newbie", "display_name": "S", "unit_id": root, "password": "short"},
            422,
            "weak_password",
        ),
        (
            "POST",
            "/api/v1/users",
            {"username": "newbie", "display_name": "S", "unit_id": 99999},
            404,
            "unit_not_found",
        ),
        ("PATCH", "/api/v1/users/99999", {"display_name": "Y"}, 404, "user_not_found"),
        (
            "PATCH",
            f"/api/v1/users/{city.ward_user_ids[0]}",
            {"unit_id": 99999},
            404,
            "unit_not_found",
        ),
        (
            "PATCH",
            f"/api/v1/users/{city.ward_user_ids[0]}",
            {"password": "short"},
            422,
            "weak_password",
        ),
        (
            "PATCH",
            f"/api/v1/users/{city.ward_user_ids[0]}",
            {"username": "renamed"},
            400,
            "invalid_request",
        ),
        ("PATCH", f"/api/v1/users/{city.admin_id}", {"active": False}, 422, "self_lockout"),
        ("PATCH", f"/api/v1/users/{city.admin_id}", {"roles": ["staff"]}, 422, "self_lockout"),
    ]
    async with server.http(admin) as client:
        for method, path, body, status, code in cases:
            response = await client.request(method, path, json=body)
            assert response.status_code == status, (path, body, response.text)
            assert response.json()["error"]["code"] == code, (path, body)
        oversized = await client.post(
            "/api/v1/units",
            content=b"{" + b" " * 2_000_000 + b"}",
            headers={"content-type": "application/json"},
        )
        assert oversized.status_code == 413
        async with server.ctx.read() as session:
            ward = await session.get(User, city.ward_user_ids[0])
            assert ward is not None and ward.unit_id == city.commune_unit_ids[0]
            assert ward.display_name != "Y"
    assert await counts(server) == before


async def test_renaming_a_unit_and_changing_a_user_emit_events(
    server: RunningServer, city: DemoCity
) -> None:
    admin = await server.login("admin", DEMO_PASSWORD)
    ward = await server.login("ward001", DEMO_PASSWORD)
    async with server.socket(ward) as ws:
        async with server.http(admin) as client:
            renamed = await client.patch(
                f"/api/v1/units/{city.commune_unit_ids[0]}", json={"name": "Phường Hàng Bạc"}
            )
            assert renamed.status_code == 200
            changed = await client.patch(
                f"/api/v1/users/{city.ward_user_ids[0]}",
                json={"clearance": "secret", "is_unit_head": False},
            )
            assert changed.status_code == 200
        unit_event = await ws.next_event("unit.updated")
        user_event = await ws.next_event("user.updated")
    assert unit_event["topic"] == f"unit:{city.commune_unit_ids[0]}"
    assert unit_event["data"]["name"] == "Phường Hàng Bạc"
    assert unit_event["seq"] == ws.ready["topics"][unit_event["topic"]] + 1
    assert user_event["topic"] == f"user:{city.ward_user_ids[0]}"
    assert user_event["data"]["clearance"] == "secret"
    assert "password_hash" not in user_event["data"]


async def test_disabling_a_user_closes_its_sockets(server: RunningServer, city: DemoCity) -> None:
    admin = await server.login("admin", DEMO_PASSWORD)
    token = await server.login("ward005", DEMO_PASSWORD)
    async with server.socket(token) as ws:
        async with server.http(admin) as client:
            response = await client.patch(
                f"/api/v1/users/{city.ward_user_ids[4]}", json={"active": False}
            )
            assert response.status_code == 200
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await ws.recv(timeout=10)
    assert ws.ws.close_code == 4401
    assert server.ctx.hub.user_connections(city.ward_user_ids[4]) == []


async def test_units_below_a_unit(server: RunningServer, city: DemoCity) -> None:
    from server.org.service import is_below

    root, commune = city.root_unit_id, city.commune_unit_ids[0]
    async with server.ctx.read() as session:
        assert await is_below(session, commune, root)
        assert await is_below(session, commune, commune)
        assert not await is_below(session, root, commune)
        assert not await is_below(session, commune, city.commune_unit_ids[1])
        assert not await is_below(session, 999_999, root)
