"""No malformed request answers 500: every route, walked from the app, gets hostile input.

Two layers: a sweep that sends each known class of hostile input (ids beyond 64 bits in
paths, queries and bodies; times near year 1 and 9999; deeply nested JSON; lone
surrogates) to every route, and a property-based test that sends generated paths, queries
and bodies. Every answer is below 500 and every refusal has the error shape.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from server.demo import DemoCity
from server.http import Body, body_model
from tests.conftest import DEMO_PASSWORD
from tests.harness import RunningServer

HUGE = 10**20
PARAM = re.compile(r"{([a-z_]+)(?::[a-z]+)?}")
QUERY_NAMES = (
    "limit",
    "before_id",
    "after_seq",
    "before_seq",
    "unit_id",
    "width",
    "shared",
    "box",
    "q",
)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    model: type[Body] | None

    @property
    def params(self) -> list[str]:
        return PARAM.findall(self.path)

    def url(self, values: dict[str, Any]) -> str:
        return PARAM.sub(lambda m: str(values.get(m.group(1), 1)), self.path)


def endpoints(server: RunningServer) -> list[Endpoint]:
    found = []
    for route in server.app.routes:
        if not isinstance(route, Route) or not route.path.startswith("/api/"):
            continue
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                found.append(Endpoint(method, route.path, body_model(route.endpoint)))
    return found


def dump(body: Any) -> bytes:
    # ensure_ascii keeps lone surrogates as \\ud800 escapes, as an attacker would send them.
    return json.dumps(body, ensure_ascii=True).encode()


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": [value]}
    return value


def hostile_bodies(model: type[Body] | None) -> list[tuple[str, bytes]]:
    """Each class of hostile body, in every field the model declares."""
    fields = (list(model.model_fields) if model is not None else []) or ["x"]
    first = fields[0].encode()
    bodies = [
        ("deep object", b'{"a":' * 20_000 + b"1" + b"}" * 20_000),
        ("deep array", b'{"a":' + b"[" * 20_000 + b"]" * 20_000 + b"}"),
        ("moderately deep", dump({fields[0]: nested(60)})),
        ("long integer literal", b'{"' + first + b'":' + b"9" * 5000 + b"}"),
        ("not a number", b'{"' + first + b'":NaN}'),
        ("surrogate key", dump({"\ud800": 1})),
    ]
    for label, value in (
        ("huge int", HUGE),
        ("huge negative int", -HUGE),
        ("int64+1", 2**63),
        ("surrogate", "\ud800"),
        ("surrogate list", ["\udfff"]),
        ("huge int list", [HUGE]),
    ):
        bodies.append((f"{label} in every field", dump(dict.fromkeys(fields, value))))
    # Times pass the JSON checks and reach the model: one field at a time.
    for name in fields:
        for label, value in (
            ("int32+1", 2**31),
            ("year 1", "0001-01-01T00:00:00+05:00"),
            ("year 9999", "9999-12-31T23:59:59-05:00"),
        ):
            bodies.append((f"{label} in {name}", dump({name: value})))
    return bodies


def assert_refused_properly(response: httpx.Response, what: str) -> None:
    assert response.status_code < 500, f"{what}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400 and response.status_code != 405:
        error = response.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str), what


async def tokens(server: RunningServer) -> list[str]:
    return [await server.login(name, DEMO_PASSWORD) for name in ("admin", "chair")]


async def send_all(client: httpx.AsyncClient, batch: list[tuple[str, str, dict[str, Any]]]) -> None:
    """Send (what, method, url, options) requests a few at a time; check every answer."""
    for start in range(0, len(batch), 8):
        chunk = batch[start : start + 8]
        answers = await asyncio.gather(
            *(client.request(method, url, **options) for _what, method, url, options in chunk)
        )
        for (what, *_rest), response in zip(chunk, answers, strict=True):
            assert_refused_properly(response, what)


async def test_every_known_class_of_hostile_input_is_refused_without_500(
    server: RunningServer, city: DemoCity
) -> None:
    admin, _chair = await tokens(server)
    found = endpoints(server)
    assert len(found) > 60
    batch: list[tuple[str, str, str, dict[str, Any]]] = []
    json_header = {"content-type": "application/json"}
    for endpoint in found:
        for param in endpoint.params:
            for bad in (HUGE, 2**63, 2**31, -HUGE, 0, "9" * 5000, "%ED%A0%80"):
                url = endpoint.url({param: bad})
                batch.append((f"{endpoint.method} {url:.200}", endpoint.method, url, {}))
        for bad in (str(HUGE), str(2**63), "-" + str(HUGE), "%ED%A0%80", "9" * 5000):
            batch.append(
                (
                    f"{endpoint.method} {endpoint.path} ?{bad:.20}",
                    endpoint.method,
                    endpoint.url({}),
                    {"params": dict.fromkeys(QUERY_NAMES, bad)},
                )
            )
        if endpoint.method in ("POST", "PUT", "PATCH"):
            for label, content in hostile_bodies(endpoint.model):
                batch.append(
                    (
                        f"{endpoint.method} {endpoint.path} {label}",
                        endpoint.method,
                        endpoint.url({}),
                        {"content": content, "headers": json_header},
                    )
                )
    async with server.http(admin) as client:
        await send_all(client, batch)
    # The unauthenticated sign-in is parsed before anyone is known.
    async with server.http() as client:
        for label, content in hostile_bodies(None):
            response = await client.post("/api/v1/auth/login", content=content, headers=json_header)
            assert_refused_properly(response, f"login {label}")
            assert response.status_code == 400, label


async def test_the_known_inputs_get_400_in_the_error_shape(
    server: RunningServer, city: DemoCity
) -> None:
    admin, _chair = await tokens(server)
    async with server.http(admin) as client:
        ballot = await client.post(
            f"/api/v1/polls/{HUGE}/ballots", json={"choice": "yes", "idempotency_key": "k" * 20}
        )
        box = await client.get("/api/v1/directives", params={"before_id": str(HUGE)})
        ack = await client.post(
            "/api/v1/directives/1/ack",
            content=dump({"note": "\ud800"}),
            headers={"content-type": "application/json"},
        )
        meeting = await client.post(
            "/api/v1/meetings",
            json={
                "title": "x",
                "starts_at": "9999-12-31T23:59:59-05:00",
                "chair_ids": [1],
                "delegate_ids": [1],
            },
        )
        unit = await client.post(
            "/api/v1/units", json={"name": "x", "kind": "commune", "parent_id": HUGE}
        )
    assert (ballot.status_code, ballot.json()["error"]["code"]) == (400, "invalid_id")
    assert (box.status_code, box.json()["error"]["code"]) == (400, "invalid_request")
    assert (ack.status_code, ack.json()["error"]["code"]) == (400, "invalid_json")
    assert (meeting.status_code, meeting.json()["error"]["code"]) == (400, "invalid_request")
    assert (unit.status_code, unit.json()["error"]["code"]) == (400, "invalid_json")
    async with server.http() as client:
        deep = await client.post(
            "/api/v1/auth/login",
            content=b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
            headers={"content-type": "application/json"},
        )
    assert (deep.status_code, deep.json()["error"]["code"]) == (400, "invalid_json")


# Generated JSON: the scalars an attacker reaches for, nested a little.
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(
        [
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-12:00",
            "2026-05-01T09:00:00+07:00",
            "\ud800",
            "",
            "yes",
            "express",
        ]
    )
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
PATH_VALUES = st.integers(min_value=-(2**70), max_value=2**70).map(str) | st.text(
    alphabet="0123456789abc-%.", min_size=1, max_size=30
)


@st.composite
def requests(
    draw: st.DrawFn, found: list[Endpoint]
) -> tuple[Endpoint, str, dict[str, str], bytes | None]:
    endpoint = draw(st.sampled_from(found))
    values = {name: draw(PATH_VALUES) for name in endpoint.params}
    query = draw(
        st.dictionaries(
            st.sampled_from(QUERY_NAMES), PATH_VALUES | st.text(max_size=10), max_size=3
        )
    )
    body: bytes | None = None
    if endpoint.method in ("POST", "PUT", "PATCH"):
        names = list(endpoint.model.model_fields) if endpoint.model is not None else []
        keys = st.sampled_from(names) | st.text(max_size=8) if names else st.text(max_size=8)
        body = dump(draw(st.dictionaries(keys, JSON_VALUES, max_size=6)))
    return endpoint, endpoint.url(values), query, body


async def test_generated_requests_never_answer_500(server: RunningServer, city: DemoCity) -> None:
    admin, chair = await tokens(server)
    found = endpoints(server)

    @settings(
        max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(st.data())
    def explore(data: st.DataObject) -> None:
        drawn.append((data.draw(requests(found)), data.draw(st.sampled_from([admin, chair]))))

    # Hypothesis draws synchronously; the requests then go to the server in this loop.
    drawn: list[tuple[tuple[Endpoint, str, dict[str, str], bytes | None], str]] = []
    explore()
    for token in (admin, chair):
        batch = [
            (
                f"{endpoint.method} {url} {query} {body!r:.300}",
                endpoint.method,
                url,
                {
                    "params": query,
                    "content": body,
                    "headers": {"content-type": "application/json"} if body is not None else {},
                },
            )
            for (endpoint, url, query, body), drawn_token in drawn
            if drawn_token == token
        ]
        async with server.http(token) as client:
            await send_all(client, batch)


async def test_every_route_that_reads_a_body_reads_a_strict_body_model(
    server: RunningServer,
) -> None:
    """One strict base class for every route: an endpoint that calls read_json reads a
    model derived from ``Body`` (unknown fields refused, values that fit the columns)."""
    readers = []
    for route in server.app.routes:
        endpoint = getattr(route, "endpoint", None)
        code = getattr(endpoint, "__code__", None)
        if code is not None and "read_json" in code.co_names:
            readers.append(route.path)
            assert body_model(endpoint) is not None, route.path
            assert body_model(endpoint).model_config.get("extra") == "forbid", route.path
    assert len(readers) > 25
