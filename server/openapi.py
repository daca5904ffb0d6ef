"""The OpenAPI 3.1 description of the REST API, generated from the routes themselves.

Paths and methods come from the application's routes; a path parameter an endpoint reads
with ``path_int`` is an integer; a request body is the JSON Schema of the ``Body`` model
the endpoint reads (``server.http.body_model``); errors are the one error shape with the
codes of ``server.errors.ERROR_CATALOGUE``. Served at ``/api/v1/openapi.json``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from server.errors import ERROR_CATALOGUE
from server.http import JSON, MAX_ID, body_model

OPENAPI_VERSION = "3.1.0"
_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?}")
_PATH_INT = re.compile(r"path_int\(\s*request\s*,\s*\"(\w+)\"")
# Endpoints that need no token.
PUBLIC = {
    ("POST", "/api/v1/auth/login"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/api/v1/auth/oidc"),
    ("GET", "/api/v1/auth/oidc/start"),
    ("GET", "/api/v1/auth/oidc/callback"),
    ("POST", "/api/v1/auth/oidc/exchange"),
}
# Bodies that are not JSON.
MULTIPART_FILE = {("POST", "/api/v1/files")}


def _integer_params(endpoint: Callable[..., Any]) -> set[str]:
    """Path parameters the endpoint parses with ``path_int``, read from its source."""
    try:
        source = inspect.getsource(endpoint)
    except (OSError, TypeError):
        return set()
    return set(_PATH_INT.findall(source))


def _operation_id(method: str, path: str) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", path.removeprefix("/api/v1/")).strip("_")
    return f"{method.lower()}_{words or 'root'}"


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def describe(
    routes: Iterable[BaseRoute], *, title: str = "Diên Hồng", version: str = "1"
) -> dict[str, Any]:
    """The OpenAPI document of every ``/api/`` route."""
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string", "enum": sorted(ERROR_CATALOGUE)},
                        "message": {"type": "string"},
                        "details": {},
                    },
                }
            },
        },
    }
    for route in routes:
        if not isinstance(route, Route) or not route.path.startswith("/api/"):
            continue
        endpoint = route.endpoint
        integers = _integer_params(endpoint)
        parameters = []
        for name in _PARAM.findall(route.path):
            schema: dict[str, Any] = (
                {"type": "integer", "maximum": MAX_ID} if name in integers else {"type": "string"}
            )
            parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            operation: dict[str, Any] = {
                "operationId": _operation_id(method, route.path),
                "summary": (endpoint.__doc__ or endpoint.__name__).strip().splitlines()[0],
                "responses": {
                    "2XX": {"description": "Success."},
                    "4XX": _error_response(
                        "Refused: the error shape, with a code of the catalogue."
                    ),
                },
            }
            if parameters:
                operation["parameters"] = parameters
            if (method, route.path) in PUBLIC:
                operation["security"] = []
            model = body_model(endpoint)
            if (method, route.path) in MULTIPART_FILE:
                operation["requestBody"] = {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["file"],
                                "properties": {
                                    "file": {
                                        "type": "string",
                                        "contentMediaType": "application/octet-stream",
                                    }
                                },
                            }
                        }
                    },
                }
            elif model is not None:
                name = f"{model.__module__}.{model.__qualname__}"
                schema = model.model_json_schema(
                    ref_template="#/components/schemas/{model}", mode="validation"
                )
                for nested_name, nested in schema.pop("$defs", {}).items():
                    schemas.setdefault(nested_name, nested)
                schemas[name] = schema
                operation["requestBody"] = {
                    "required": False,
                    "content": {
                        "application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}
                    },
                }
            paths.setdefault(route.path, {})[method.lower()] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": "The REST API of Diên Hồng. Real-time events: GET /ws.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


async def openapi_document(request: Request) -> Response:
    """The OpenAPI 3.1 description of this server's REST API."""
    document = getattr(request.app.state, "openapi", None)
    if document is None:
        document = describe(request.app.routes)
        request.app.state.openapi = document
    return JSON(document)
