"""The OpenAPI 3.1 description: served without a token, valid, generated from the routes
(every route and method is in it, with its path parameters and body schema), and the
refusals the routes answer match its error shape."""

from __future__ import annotations

from typing import Any

import jsonschema
from openapi_spec_validator import validate
from starlette.routing import Route

from server.demo import DemoCity
from server.http import body_model
from tests.conftest import DEMO_PASSWORD
from tests.harness import RunningServer


async def fetch_document(server: RunningServer) -> dict[str, Any]:
    async with server.http() as client:
        response = await client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


async def test_the_description_is_valid_openapi_3_1_with_every_route(
    server: RunningServer,
) -> None:
    document = await fetch_document(server)
    validate(document)
    assert document["openapi"].startswith("3.1")
    paths = document["paths"]
    schemas = document["components"]["schemas"]
    checked = 0
    for route in server.app.routes:
        if not isinstance(route, Route) or not route.path.startswith("/api/"):
            continue
        for method in route.methods or ():
            if method == "HEAD":
                continue
            operation = paths[route.path][method.lower()]
            checked += 1
            names = [p["name"] for p in operation.get("parameters", [])]
            assert names == [
                part.strip("{}").split(":")[0]
                for part in route.path.replace("}.", "}/.").split("/")
                if part.startswith("{")
            ]
            model = body_model(route.endpoint)
            if model is not None:
                ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                schema = schemas[ref.rsplit("/", 1)[1]]
                assert set(schema.get("properties", {})) == set(model.model_fields), route.path
    assert checked > 60
    assert sum(len(methods) for methods in paths.values()) == checked
    # Ids are integers; a receipt is text.
    meeting = paths["/api/v1/meetings/{meeting_id}"]["get"]["parameters"][0]
    assert meeting["schema"]["type"] == "integer"
    receipt = paths["/api/v1/polls/{poll_id}/receipts/{receipt}"]["get"]["parameters"]
    assert [p["schema"]["type"] for p in receipt] == ["integer", "string"]
    assert paths["/api/v1/auth/login"]["post"]["security"] == []
    login = schemas[
        paths["/api/v1/auth/login"]["post"]["requestBody"]["content"]["application/json"]["schema"][
            "$ref"
        ].rsplit("/", 1)[1]
    ]
    assert set(login["required"]) == {"username", "password"}


async def test_refusals_match_the_documented_error_shape(
    server: RunningServer, city: DemoCity
) -> None:
    document = await fetch_document(server)
    error_schema = {
        **document["components"]["schemas"]["Error"],
        "components": document["components"],
    }
    token = await server.login("ward001", DEMO_PASSWORD)
    async with server.http(token) as client:
        answers = [
            await client.get("/api/v1/meetings/999999"),
            await client.post("/api/v1/directives", json={"title": 1}),
            await client.get("/api/v1/polls/abc"),
            await client.get("/api/v1/nothing"),
            await client.post("/api/v1/units", json={"name": "x", "kind": "ward"}),
        ]
    for response in answers:
        assert 400 <= response.status_code < 500
        jsonschema.validate(response.json(), error_schema)
