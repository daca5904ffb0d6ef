"""What the session pages need to know of the server's settings (``GET /api/v1/display``).

The pages have no build step and no settings of their own: the projector reads here how
long a closed vote's result stays on the hall's screen, the delegate tablet how much of a
meeting it downloads ahead of the session.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.http import JSON, context, current_user


def display_settings(settings: Any) -> dict[str, Any]:
    """The settings the session pages read."""
    return {
        "projector_result_secs": settings.projector_result_secs,
        "preload_max_documents": settings.preload_max_documents,
        "preload_max_bytes": settings.preload_max_bytes,
    }


async def get_display(request: Request) -> Response:
    await current_user(request)
    return JSON(display_settings(context(request).settings))


routes = [Route("/api/v1/display", get_display, methods=["GET"])]
