"""The record of a session as a PDF."""

from __future__ import annotations

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
