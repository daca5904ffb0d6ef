"""The signing feature as the core sees it."""

from __future__ import annotations

from server.features import Feature


def feature() -> Feature:
    from server.signing.routes import routes

    return Feature(name="signing", routes=list(routes))
