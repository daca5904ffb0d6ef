"""Path parameters are named the same way in every route: an id is ``<whole noun>_id``
(``{meeting_id}``, never ``{mid}``), the same collection always names its member the same,
and each endpoint reads (``path_int``) only parameters its route has."""

from __future__ import annotations

import re

from starlette.routing import BaseRoute, Route, WebSocketRoute

from server.app import default_features
from server.openapi import _integer_params
from server.org.routes import routes as org_routes

PARAM = re.compile(r"{([^}:]+)(?::[a-z]+)?}")
# Parameters that are no id: a receipt code and a page number.
NOT_IDS = {"receipt", "page"}
ID = re.compile(r"^(?P<noun>[a-z]{4,}(?:_[a-z]+)*)_id$")


def _routes() -> list[BaseRoute]:
    routes: list[BaseRoute] = list(org_routes)
    for feature in default_features():
        routes.extend(feature.routes)
    return routes


def _parameters(path: str) -> list[tuple[str, str]]:
    """Each parameter of ``path`` with the path segment before it (its collection)."""
    found = []
    segments = path.split("/")
    for index, segment in enumerate(segments):
        for name in PARAM.findall(segment):
            found.append((segments[index - 1], name))
    return found


def _misnamed(paths: list[str]) -> list[str]:
    wrong = []
    for path in paths:
        for _, name in _parameters(path):
            if name not in NOT_IDS and ID.match(name) is None:
                wrong.append(f"{path}: {{{name}}}")
    return wrong


def _inconsistent(paths: list[str]) -> dict[str, set[str]]:
    names: dict[str, set[str]] = {}
    for path in paths:
        for collection, name in _parameters(path):
            names.setdefault(collection, set()).add(name)
    return {collection: found for collection, found in names.items() if len(found) > 1}


def test_the_rule_tells_a_short_or_drifting_name() -> None:
    assert _misnamed(
        [
            "/api/v1/meetings/{mid}",
            "/api/v1/meetings/{meeting_id}/speakers/{sid}",
            "/api/v1/files/{file_id}/pages/{page}.png",
            "/x/{id}",
        ]
    ) == [
        "/api/v1/meetings/{mid}: {mid}",
        "/api/v1/meetings/{meeting_id}/speakers/{sid}: {sid}",
        "/x/{id}: {id}",
    ]
    assert _inconsistent(
        [
            "/api/v1/meetings/{meeting_id}",
            "/api/v1/meetings/{id_of_meeting}",
            "/api/v1/polls/{poll_id}",
        ]
    ) == {"meetings": {"meeting_id", "id_of_meeting"}}


def test_every_route_names_its_parameters_the_same_way() -> None:
    routes = [r for r in _routes() if isinstance(r, Route | WebSocketRoute)]
    paths = sorted({route.path for route in routes})
    assert len(paths) > 40
    assert _misnamed(paths) == []
    assert _inconsistent(paths) == {}
    # A handler that parsed a parameter its route lacks would fail with a 500.
    for route in routes:
        if isinstance(route, Route):
            own = {name for _, name in _parameters(route.path)}
            assert _integer_params(route.endpoint) <= own, route.path
