"""The media feature as the core sees it: signalling routes, the worker, the floor."""

from __future__ import annotations

from server.features import Feature


def feature() -> Feature:
    from meeting.media.routes import routes
    from meeting.media.service import run_media, start_media

    return Feature(
        name="media",
        routes=list(routes),
        startup=[start_media],
        background=[run_media],
    )
