"""What a feature package (files, messaging, meeting) plugs into the core.

``create_app`` collects one ``Feature`` from each package and merges them into the
``Context``: routes, who may subscribe to which topic kinds, what happens when clients
confirm receipt of events, ephemeral client signals, socket connect/disconnect hooks and
long-running background tasks. Nothing is registered at import time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement

    from server.auth.principal import Principal
    from server.context import Context, Write
    from server.demo import DemoCity
    from server.realtime.contract import ClientOp, EventType
    from server.realtime.log import Event


@dataclass(frozen=True)
class Received:
    """A client confirmed it holds every event of ``topic`` up to ``seq``."""

    user_id: int
    topic: str
    seq: int


# (ctx, principal, topic id) -> may this user subscribe to "<kind>:<id>"?
TopicAuthorizer = Callable[["Context", "Principal", int], Awaitable[bool]]
# Called in batches with every confirmation gathered since the last call.
ReceivedHandler = Callable[["Context", Sequence[Received]], Awaitable[None]]
# A client signal (typing…): returns the data to fan out on the topic, or None to drop it.
SignalHandler = Callable[
    ["Context", "Principal", str, dict[str, Any]], Awaitable[dict[str, Any] | None]
]
# A client op over /ws (``ack``, ``read``…): (ctx, principal, frame) -> the answer's data,
# awaited while the socket goes on reading; an ``ApiError`` (raised at once or by the
# awaitable) is answered with its code.
SocketOpHandler = Callable[["Context", "Principal", dict[str, Any]], Awaitable[dict[str, Any]]]
# (ctx, principal, connected?) when a user's socket opens or closes.
ConnectionHook = Callable[["Context", "Principal", bool], Awaitable[None]]
# A long-running task started with the app and cancelled at shutdown.
BackgroundTask = Callable[["Context"], Coroutine[Any, Any, None]]
# (principal, file id: a value or a column) -> SQL: does an object this feature owns let the
# user read the file? All features' rules and the file's row are read in one query, built
# once per kind of reader: the principal's id and unit may be SQL parameters there, so a
# rule uses them in SQL only; only its roles and clearance may shape the SQL.
FileAccessRule = Callable[["Principal", Any], "ColumnElement[bool]"]
# (write, file id, name, text) when the text of a file was read after its upload (a PDF's
# text is read by a text worker once the upload is answered): in the transaction that
# stores the text, e.g. to make the file searchable where it is already attached.
FileTextHandler = Callable[["Write", int, str, str], Awaitable[None]]
# An event type that changes who may follow what -> the users it concerns, each with the
# reason an ``unsubscribed`` frame gives (None: the gateway says what changed).
AccessChange = Callable[["Event"], Iterable[tuple[int, str | None]]]
# An event's payload as one reader may see it when it is sent to that reader (replayed
# from the log or fanned out live): the payload to send instead, or None to send it as is.
EventView = Callable[["Principal", dict[str, Any]], dict[str, Any] | None]
# Adds a feature's part to the demo city; returns lines for the summary.
DemoHook = Callable[["Context", "DemoCity"], Awaitable[list[str]]]


@dataclass(frozen=True)
class SocketOp:
    """A client op a feature carries out: its declared frame and its handler."""

    contract: ClientOp
    handle: SocketOpHandler


@dataclass
class Feature:
    name: str
    routes: list[BaseRoute] = field(default_factory=list)
    topic_authorizers: dict[str, TopicAuthorizer] = field(default_factory=dict)
    received_handlers: list[ReceivedHandler] = field(default_factory=list)
    signal_handlers: dict[str, SignalHandler] = field(default_factory=dict)
    socket_ops: list[SocketOp] = field(default_factory=list)
    connection_hooks: list[ConnectionHook] = field(default_factory=list)
    background: list[BackgroundTask] = field(default_factory=list)
    # Runs once at start-up after migrations (e.g. to create missing unit channels).
    startup: list[BackgroundTask] = field(default_factory=list)
    demo: list[DemoHook] = field(default_factory=list)
    # A file is readable by its uploader and by whoever one of these rules lets through.
    file_access_rules: list[FileAccessRule] = field(default_factory=list)
    # Told when the text of a file has been read after its upload.
    file_text_handlers: list[FileTextHandler] = field(default_factory=list)
    # Events after which the subscriptions of the users they concern are checked again.
    access_changes: dict[str, AccessChange] = field(default_factory=dict)
    # Per event type, what a reader may see of it by the visibility rules at reading time.
    event_views: dict[str, EventView] = field(default_factory=dict)
    # The event types this feature emits, with their payload fields (a contract).
    event_types: list[EventType] = field(default_factory=list)
