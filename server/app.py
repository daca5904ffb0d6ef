"""``create_app(settings) -> Starlette``: routes, lifespan, middleware."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Match, Mount, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from server.audit_anchor import (
    Countersigner,
    NodeKeySigner,
    checkpoint_forever,
    checkpoint_now,
)
from server.auth.tokens import TokenService, node_key_in_use
from server.clock import Clock, SystemClock
from server.compression import Compression
from server.context import Context
from server.db import Database
from server.errors import ApiError, Forbidden, NotFound
from server.features import Feature
from server.http import JSON, SecurityHeaders, context, route_path
from server.metrics import Metrics
from server.openapi import openapi_document
from server.org.routes import routes as org_routes
from server.org.service import forget_changed_users
from server.realtime.broker import create_broker
from server.realtime.gateway import CORE_OPS, Gateway
from server.realtime.hub import CLOSE_RESTART
from server.realtime.log import Event, prune_events
from server.settings import Settings
from server.static_assets import HashedStaticFiles

log = logging.getLogger("dienhong.app")

# How often old events are pruned from the log.
PRUNE_INTERVAL_SECS = 3600


def _organisation_countersigner(settings: Settings) -> Countersigner | None:
    """The organisation's seal signs audit checkpoints too, when one is configured."""
    if not (settings.signing_org_token_label or settings.signing_org_pkcs12):
        return None
    from server.signing.checkpoints import organisation_countersigner

    return organisation_countersigner(settings)


def default_features() -> list[Feature]:
    """The feature packages of a full server, in the order their routes are mounted.

    Each package exposes ``feature() -> Feature``; add new packages here.
    """
    features: list[Feature] = []
    from server.files.feature import feature as files_feature

    features.append(files_feature())
    from meeting.feature import feature as meeting_feature

    features.append(meeting_feature())
    from meeting.polls import feature as polls_feature

    features.append(polls_feature())
    from meeting.media.feature import feature as media_feature

    features.append(media_feature())
    from messaging.feature import feature as messaging_feature

    features.append(messaging_feature())
    from server.signing.feature import feature as signing_feature

    features.append(signing_feature())
    from server.auth.feature import feature as oidc_feature

    features.append(oidc_feature())
    return features


async def ws_events(request: Request) -> Response:
    """The event types of ``/ws`` with their payload schemas, from the registry."""
    ctx = context(request)
    return JSON(ctx.event_types.describe([op.contract for op in ctx.socket_ops.values()]))


async def healthz(request: Request) -> Response:
    ctx = context(request)
    checks: dict[str, str] = {}
    healthy = True
    for name, probe in (("database", ctx.db.ping), ("broker", ctx.broker.ping)):
        try:
            await asyncio.wait_for(probe(), timeout=2)
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"error: {type(exc).__name__}"
            healthy = False
    return JSON(
        {"status": "ok" if healthy else "degraded", "checks": checks},
        status_code=200 if healthy else 503,
    )


def may_read_metrics(request: Request) -> bool:
    """An allow-listed client address, or the metrics token as a bearer token."""
    settings = context(request).settings
    if settings.metrics_token:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), settings.metrics_token.encode()
        ):
            return True
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    for allowed in settings.metrics_allowed_addresses:
        with contextlib.suppress(ValueError):
            if address in ipaddress.ip_network(allowed, strict=False):
                return True
    return False


async def metrics(request: Request) -> Response:
    if not may_read_metrics(request):
        # As if absent: the figures tell an outsider who is online and how busy it is.
        raise NotFound("Not Found", code="not_found")
    return PlainTextResponse(
        context(request).metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )


async def websocket_endpoint(websocket: WebSocket) -> None:
    gateway: Gateway = websocket.app.state.gateway
    await gateway.serve(websocket)


SOCKET_ROUTE = WebSocketRoute("/ws", websocket_endpoint)


class DienHong(Starlette):
    """The application: Starlette's, with the socket handed straight to the gateway.

    None of the middleware touches a WebSocket (metrics, security headers and compression
    are for HTTP answers; the gateway answers its own errors on the socket), yet every
    socket and every frame it sends or receives would pass through each of them and the
    router. Thousands of sockets reconnecting at once after a restart feel that, so
    ``/ws`` skips them; every other WebSocket path still meets the router (and its 403).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and SOCKET_ROUTE.matches(scope)[0] is Match.FULL:
            scope["app"] = self
            await websocket_endpoint(WebSocket(scope, receive, send))
            return
        await super().__call__(scope, receive, send)


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if isinstance(exc, Forbidden):
        principal = getattr(request.state, "principal", None)
        ctx = context(request)
        try:
            async with ctx.write() as w:
                await w.audit(
                    principal.id if principal else None,
                    "access.refused",
                    f"{request.method} {route_path(request)}",
                    {"code": exc.code, "message": exc.message},
                )
        except Exception:
            log.exception("could not audit a refusal")
    headers = {}
    if exc.status == 429 and isinstance(exc.details, dict) and "retry_after" in exc.details:
        headers["Retry-After"] = str(exc.details["retry_after"])
    return JSON(exc.body(), status_code=exc.status, headers=headers)


# Codes of the errors Starlette raises itself (unknown path, wrong method; 0: any other).
HTTP_ERROR_CODES = {404: "not_found", 405: "method_not_allowed", 0: "http_error"}


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = HTTP_ERROR_CODES.get(exc.status_code, HTTP_ERROR_CODES[0])
    return JSON({"error": {"code": code, "message": str(exc.detail)}}, status_code=exc.status_code)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, route_path(request), exc_info=exc)
    return JSON(
        {"error": {"code": "internal_error", "message": "Internal server error."}}, status_code=500
    )


class RequestMetrics:
    """Times every HTTP request by route template, and logs it."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Sequence[BaseRoute] = ()) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = list(routes)
        # The router leaves the matched endpoint in the scope; an endpoint served by one
        # route names its template without trying every route's pattern.
        by_endpoint: dict[object, list[BaseRoute]] = {}
        for route in self.routes:
            if isinstance(route, Route):
                by_endpoint.setdefault(route.endpoint, []).append(route)
        self.route_of_endpoint = {
            endpoint: found[0] for endpoint, found in by_endpoint.items() if len(found) == 1
        }

    def route_template(self, scope: Scope) -> str:
        """The matched route's path template: a bounded label, never the raw path."""
        known = self.route_of_endpoint.get(scope.get("endpoint"))
        if known is not None and known.matches(scope)[0] is Match.FULL:
            return str(getattr(known, "path", "unmatched"))
        for route in self.routes:
            match, _child = route.matches(scope)
            if match is Match.FULL:
                return str(getattr(route, "path", "unmatched"))
        return "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            template = self.route_template(scope)
            self.metrics.request_latency.labels(scope["method"], template, str(status)).observe(
                elapsed
            )
            if log.isEnabledFor(logging.INFO):
                # The template, never the path: paths carry ballot receipts and ids.
                log.info(
                    "%s %s %s %.1fms",
                    scope["method"],
                    template,
                    status,
                    elapsed * 1000,
                    extra={
                        "method": scope["method"],
                        "route": template,
                        "status": status,
                        "ms": round(elapsed * 1000, 1),
                    },
                )


def web_client_routes() -> list[BaseRoute]:
    static = Path(__file__).resolve().parent.parent / "web_client" / "static"
    if not static.is_dir():
        return []

    async def home(request: Request) -> Response:
        return RedirectResponse("/app/")

    return [
        Route("/", home, methods=["GET"]),
        Mount("/app", app=HashedStaticFiles(directory=static, mount="/app"), name="web_client"),
    ]


async def prune_event_log(ctx: Context) -> int:
    """Delete events older than the retention window; resuming before them gives reset."""
    cutoff = ctx.clock.now() - timedelta(seconds=ctx.settings.event_retention_secs)
    async with ctx.db.write_session() as session:
        removed = await prune_events(session, cutoff)
    if removed:
        log.info("pruned %d events older than %s", removed, cutoff.isoformat())
    return removed


async def _prune_forever(ctx: Context) -> None:
    while True:
        try:
            await prune_event_log(ctx)
        except Exception:
            log.exception("pruning the event log failed")
        await asyncio.sleep(PRUNE_INTERVAL_SECS)


async def _sample_loop_lag(ctx: Context, interval: float) -> None:
    """Sleep ``interval`` again and again; how much later than asked the loop wakes this
    task is how long anything ready to run waits for the loop (dienhong_event_loop_lag)."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time()
        await asyncio.sleep(interval)
        ctx.metrics.loop_lag.observe(max(0.0, loop.time() - asked - interval))


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    features: Sequence[Feature] | None = None,
) -> Starlette:
    """Build the application; connections open in the lifespan, not here.

    Each application is a node of its own: ``app.state.node_id`` is new at every call
    (random, so worker processes forked from one parent never share one) and labels
    ``dienhong_node_info`` in ``/metrics``.
    """
    node_id = uuid.uuid4().hex[:12]
    metrics_ = Metrics(node_id)
    db = Database(settings)
    broker = create_broker(
        settings.redis_url,
        settings.redis_channel,
        queue_messages=settings.broker_queue_messages,
        timeout_secs=settings.broker_timeout_secs,
        metrics=metrics_,
    )
    ctx = Context(settings, db, broker, clock or SystemClock(), metrics_, TokenService(settings))
    chosen = list(default_features() if features is None else features)
    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/api/v1/openapi.json", openapi_document, methods=["GET"]),
        SOCKET_ROUTE,
        Route("/api/v1/ws/events.json", ws_events, methods=["GET"]),
        *org_routes,
    ]
    for feature in chosen:
        routes.extend(feature.routes)
        ctx.topic_authorizers.update(feature.topic_authorizers)
        ctx.received_handlers.extend(feature.received_handlers)
        ctx.signal_handlers.update(feature.signal_handlers)
        for op in feature.socket_ops:
            if op.contract.name in ctx.socket_ops or op.contract.name in CORE_OPS:
                raise ValueError(f"the /ws op {op.contract.name} is declared twice")
            ctx.socket_ops[op.contract.name] = op
        ctx.connection_hooks.extend(feature.connection_hooks)
        ctx.file_access_rules.extend(feature.file_access_rules)
        ctx.file_text_handlers.extend(feature.file_text_handlers)
        ctx.access_changes.update(feature.access_changes)
        ctx.event_views.update(feature.event_views)
        for event_type in feature.event_types:
            ctx.event_types.add(event_type)
    if settings.serve_web_client:
        routes.extend(web_client_routes())
    gateway = Gateway(ctx)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        with node_key_in_use(settings, ctx.tokens.public_key):
            async with serving():
                yield

    @contextlib.asynccontextmanager
    async def serving() -> AsyncIterator[None]:
        async def deliver(events: Sequence[Event]) -> None:
            forget_changed_users(ctx, events)
            await ctx.hub.dispatch(events)

        await broker.start(deliver, ctx.hub.fan_signal, ctx.hub.sweep)
        for feature in chosen:
            for startup in feature.startup:
                await startup(ctx)
        tasks = [
            asyncio.create_task(
                ctx.hub.run_sweeper(settings.log_sweep_interval_secs), name="log-sweeper"
            ),
            asyncio.create_task(_prune_forever(ctx), name="log-pruner"),
        ]
        if settings.loop_lag_interval_secs > 0:
            tasks.append(
                asyncio.create_task(
                    _sample_loop_lag(ctx, settings.loop_lag_interval_secs), name="loop-lag"
                )
            )
        for feature in chosen:
            for job in feature.background:
                tasks.append(asyncio.create_task(job(ctx), name=f"{feature.name}-{job.__name__}"))
        signer = NodeKeySigner.for_node(settings)
        countersigner = _organisation_countersigner(settings)
        if settings.audit_checkpoint_interval_secs > 0:
            tasks.append(
                asyncio.create_task(
                    checkpoint_forever(ctx, signer, countersigner), name="audit-checkpoints"
                )
            )
        try:
            yield
        finally:
            await ctx.hub.close_all(CLOSE_RESTART)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await gateway.flush_received()
            if settings.audit_checkpoint_interval_secs > 0:
                await checkpoint_now(ctx, signer, countersigner)
            await broker.stop()
            await db.dispose()

    app = DienHong(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            ApiError: api_error,
            HTTPException: http_error,
            Exception: unexpected_error,
        },
    )
    app.state.ctx = ctx
    app.state.gateway = gateway
    app.state.node_id = node_id
    app.add_middleware(RequestMetrics, metrics=metrics_, routes=routes)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(Compression, minimum_size=settings.compress_min_bytes)
    return app
