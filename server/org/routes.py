"""HTTP routes: sign-in, the current user, units and users."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, StringConstraints
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.auth.service import login
from server.http import JSON, Body, context, current_user, path_int, read_json
from server.org import service
from server.org.admin_routes import routes as admin_routes
from server.org.models import Confidentiality, Role, UnitKind

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Username = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$"
    ),
]


# What anyone signed in sees of another member of a unit.
PUBLIC_MEMBER_FIELDS = frozenset({"id", "username", "display_name", "unit_id"})


class Strict(Body):
    model_config = ConfigDict(extra="forbid")


class LoginBody(Strict):
    username: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class UnitBody(Strict):
    name: Name
    kind: UnitKind
    parent_id: int | None = None


class UnitPatch(Strict):
    name: Name | None = None
    parent_id: int | None = None


class UserBody(Strict):
    username: Username
    display_name: Name
    title: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] = ""
    unit_id: int
    roles: list[Role] = Field(default_factory=list, max_length=6)
    clearance: Confidentiality = Confidentiality.NONE
    password: str | None = Field(default=None, max_length=256)
    is_unit_head: bool = False


class UserPatch(Strict):
    display_name: Name | None = None
    title: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    unit_id: int | None = None
    roles: list[Role] | None = Field(default=None, max_length=6)
    clearance: Confidentiality | None = None
    password: str | None = Field(default=None, max_length=256)
    active: bool | None = None
    is_unit_head: bool | None = None


async def login_route(request: Request) -> Response:
    body = await read_json(request, LoginBody)
    client = request.client.host if request.client else ""
    return JSON(await login(context(request), body.username, body.password, client))


async def me(request: Request) -> Response:
    principal = await current_user(request)
    unit = await service.read_unit_json(context(request), principal.unit_id)
    return JSON(
        {
            "id": principal.id,
            "username": principal.username,
            "display_name": principal.display_name,
            "unit_id": principal.unit_id,
            "unit": unit,
            "roles": sorted(principal.roles),
            "clearance": principal.clearance.value,
        }
    )


async def units(request: Request) -> Response:
    await current_user(request)
    async with context(request).read() as session:
        rows = await service.list_units(session)
    return JSON({"units": [service.unit_json(unit) for unit in rows]})


async def create_unit(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, UnitBody)
    unit = await service.create_unit(
        context(request), actor, name=body.name, kind=body.kind, parent_id=body.parent_id
    )
    return JSON(service.unit_json(unit), status_code=201)


async def update_unit(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, UnitPatch)
    unit = await service.update_unit(
        context(request),
        actor,
        path_int(request, "unit_id"),
        name=body.name,
        parent_id=body.parent_id,
    )
    return JSON(service.unit_json(unit))


async def members(request: Request) -> Response:
    actor = await current_user(request)
    rows = await service.unit_members(context(request), actor, path_int(request, "unit_id"))
    # Roles and clearance say who may read what: only an admin and the user see them.
    return JSON(
        {
            "members": [
                {
                    key: value
                    for key, value in service.user_json(user).items()
                    if key in PUBLIC_MEMBER_FIELDS
                    or (key != "active" and (actor.is_admin or user.id == actor.id))
                }
                for user in rows
            ]
        }
    )


async def create_user(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, UserBody)
    user = await service.create_user(
        context(request),
        actor,
        username=body.username,
        display_name=body.display_name,
        unit_id=body.unit_id,
        roles=body.roles,
        clearance=body.clearance,
        password=body.password,
        is_unit_head=body.is_unit_head,
        title=body.title,
    )
    return JSON(service.user_json(user), status_code=201)


async def update_user(request: Request) -> Response:
    actor = await current_user(request)
    body = await read_json(request, UserPatch)
    user = await service.update_user(
        context(request),
        actor,
        path_int(request, "user_id"),
        display_name=body.display_name,
        unit_id=body.unit_id,
        roles=body.roles,
        clearance=body.clearance,
        password=body.password,
        active=body.active,
        is_unit_head=body.is_unit_head,
        title=body.title,
    )
    return JSON(service.user_json(user))


routes = [
    Route("/api/v1/auth/login", login_route, methods=["POST"]),
    Route("/api/v1/me", me, methods=["GET"]),
    Route("/api/v1/units", units, methods=["GET"]),
    Route("/api/v1/units", create_unit, methods=["POST"]),
    Route("/api/v1/units/{unit_id}", update_unit, methods=["PATCH"]),
    Route("/api/v1/units/{unit_id}/members", members, methods=["GET"]),
    Route("/api/v1/users", create_user, methods=["POST"]),
    Route("/api/v1/users/{user_id}", update_user, methods=["PATCH"]),
]

routes.extend(admin_routes)
