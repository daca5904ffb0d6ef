"""The files feature as the core sees it."""

from __future__ import annotations

from server.features import Feature


def feature() -> Feature:
    from server.files.routes import routes
    from server.files.runtime import run_until_shutdown

    return Feature(name="files", routes=list(routes), background=[run_until_shutdown])
