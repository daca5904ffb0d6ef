"""Single sign-on through the city's OpenID provider: its routes and the periodic check of
the provider's grants."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, StringConstraints
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from server.auth import oidc
from server.context import Context
from server.errors import ApiError
from server.features import Feature
from server.http import JSON, Body, context, read_json


class ExchangeBody(Body):
    model_config = ConfigDict(extra="forbid")

    code: Annotated[str, StringConstraints(min_length=1, max_length=200)]


async def status(request: Request) -> Response:
    """Whether the sign-in page offers the SSO button."""
    return JSON({"enabled": context(request).settings.oidc_enabled})


async def start(request: Request) -> Response:
    ctx = context(request)
    try:
        url = await oidc.start(ctx, request.query_params.get("next"))
    except ApiError as exc:
        return RedirectResponse(f"{oidc.LOGIN_PAGE}#sso_error={exc.code}", status_code=303)
    return RedirectResponse(url, status_code=303)


async def callback(request: Request) -> Response:
    params = {
        key: request.query_params[key]
        for key in ("state", "code", "error")
        if key in request.query_params
    }
    return RedirectResponse(await oidc.callback(context(request), params), status_code=303)


async def exchange(request: Request) -> Response:
    body = await read_json(request, ExchangeBody)
    return JSON(await oidc.exchange(context(request), body.code))


async def check_forever(ctx: Context) -> None:
    if ctx.settings.oidc_enabled:
        await oidc.check_forever(ctx)


def feature() -> Feature:
    return Feature(
        name="oidc",
        routes=[
            Route("/api/v1/auth/oidc", status, methods=["GET"]),
            Route("/api/v1/auth/oidc/start", start, methods=["GET"]),
            Route("/api/v1/auth/oidc/callback", callback, methods=["GET"]),
            Route("/api/v1/auth/oidc/exchange", exchange, methods=["POST"]),
        ],
        background=[check_forever],
    )
