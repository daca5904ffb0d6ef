"""Events as a contract: each declared event type with its topic and payload fields.

A feature declares its event types (``Feature.event_types``); the registry checks every
event a service emits of a declared type (``Write.emit``): its topic kind and its payload's
required fields and their JSON types. A payload may carry more fields than declared, so a
client can rely on the declared ones and ignore the rest. The registry is published as a
machine-readable description of ``/ws`` (one JSON Schema per event type) at
``GET /api/v1/ws/events.json``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

# JSON types a payload field may have, as JSON Schema names them.
JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


class _Omitted:
    """The value of an optional payload field a builder leaves out."""

    def __repr__(self) -> str:
        return "OMIT"


OMIT: Any = _Omitted()

F = TypeVar("F", bound=Callable[..., Any])


def builds(name: str) -> Callable[[F], F]:
    """Mark ``emit_<type>`` as the one builder of the event type ``name``: services emit an
    event only through its builder, and tests find every builder by this mark."""

    def mark(builder: F) -> F:
        builder.event_type = name  # type: ignore[attr-defined]
        return builder

    return mark


def payload(**fields: Any) -> dict[str, Any]:
    """A payload of the given fields in their order, without those left out (``OMIT``)."""
    return {name: value for name, value in fields.items() if value is not OMIT}


class EventContractError(ValueError):
    """A service emitted an event that breaks its declared contract (a server bug)."""


@dataclass(frozen=True)
class EventType:
    """One event type: on which topic kind it goes, what its payload holds, and why.

    ``fields`` maps each required payload field to its JSON type (``"string"``) or types
    (``"string|null"``); ``optional`` lists fields that may be absent.
    """

    name: str
    topic: str
    description: str
    fields: Mapping[str, str] = field(default_factory=dict)
    optional: Mapping[str, str] = field(default_factory=dict)

    def check(self, topic: str, data: Mapping[str, Any]) -> None:
        kind = topic.partition(":")[0]
        if kind != self.topic:
            raise EventContractError(f"{self.name} goes on {self.topic}: topics, not {topic}")
        for name, types in self.fields.items():
            if name not in data:
                raise EventContractError(f"{self.name} needs the field {name!r}")
            _check_type(self.name, name, types, data[name])
        for name, types in self.optional.items():
            if name in data:
                _check_type(self.name, name, types, data[name])

    def schema(self) -> dict[str, Any]:
        """The payload as JSON Schema (2020-12)."""
        properties = {
            name: _schema_of(types) for name, types in {**self.fields, **self.optional}.items()
        }
        return {
            "type": "object",
            "description": self.description,
            "properties": properties,
            "required": sorted(self.fields),
        }


def _names(types: str) -> list[str]:
    names = types.split("|")
    unknown = [name for name in names if name not in JSON_TYPES]
    if unknown:
        raise ValueError(f"unknown JSON types {unknown} in {types!r}")
    return names


@functools.lru_cache(maxsize=256)
def _split(types: str) -> tuple[str, ...]:
    return tuple(_names(types))


def _is_of(types: str, value: Any) -> bool:
    for type_name in _split(types):
        allowed = JSON_TYPES[type_name]
        # JSON has no booleans among its numbers: True is not an integer here.
        if isinstance(value, bool) and bool not in allowed:
            continue
        if isinstance(value, allowed):
            return True
    return False


def _check_type(event: str, name: str, types: str, value: Any) -> None:
    if not _is_of(types, value):
        raise EventContractError(
            f"{event}: field {name!r} must be {types}, not {type(value).__name__}"
        )


def _schema_of(types: str) -> dict[str, Any]:
    names = _names(types)
    return {"type": names[0] if len(names) == 1 else names}


# Fields every client op frame may carry besides its own: the op's name and the client's
# reference, echoed in the answer.
OP_FRAME_FIELDS = {"op": "string", "ref": "string|integer|null"}


class BadOpFrame(ValueError):
    """A client op frame that does not follow its declared fields (the client's fault)."""


@dataclass(frozen=True)
class ClientOp:
    """An op a client sends over ``/ws`` that a feature carries out, answered on the same
    socket: ``{"op": "ok", "ref", "data"}`` or ``{"op": "error", "ref", "code", "message"}``.

    ``fields`` and ``optional`` declare the frame's fields as ``EventType`` does; a frame
    with a field missing, of another type, or not declared is refused (strict, like the
    bodies of the HTTP routes). ``answer`` says what ``data`` holds.
    """

    name: str
    description: str
    answer: str
    fields: Mapping[str, str] = field(default_factory=dict)
    optional: Mapping[str, str] = field(default_factory=dict)

    @functools.cached_property
    def _declared(self) -> dict[str, str]:
        # Worked out once: every acknowledgement of a city passes through ``check``.
        return {**OP_FRAME_FIELDS, **self.fields, **self.optional}

    def check(self, frame: Mapping[str, Any]) -> None:
        """Raise ``BadOpFrame`` unless the frame follows the declared fields."""
        declared = self._declared
        for name, value in frame.items():
            types = declared.get(name)
            if types is None:
                raise BadOpFrame(f"{self.name} takes no field {name!r}")
            if not _is_of(types, value):
                raise BadOpFrame(f"{self.name}: field {name!r} must be {types}")
        for name in self.fields:
            if name not in frame:
                raise BadOpFrame(f"{self.name} needs the field {name!r}")

    def schema(self) -> dict[str, Any]:
        """The frame as JSON Schema (2020-12)."""
        properties = {
            name: _schema_of(types)
            for name, types in {**OP_FRAME_FIELDS, **self.fields, **self.optional}.items()
        }
        properties["op"] = {"const": self.name}
        return {
            "type": "object",
            "description": self.description,
            "properties": properties,
            "required": ["op", *sorted(self.fields)],
            "additionalProperties": False,
            "x-answer": self.answer,
        }


class EventRegistry:
    """Every declared event type, by name; a type is declared once."""

    def __init__(self, types: Iterable[EventType] = ()) -> None:
        self._types: dict[str, EventType] = {}
        for event_type in types:
            self.add(event_type)

    def add(self, event_type: EventType) -> None:
        if event_type.name in self._types:
            raise ValueError(f"event type {event_type.name} is declared twice")
        _ = [
            _names(types) for types in (*event_type.fields.values(), *event_type.optional.values())
        ]
        self._types[event_type.name] = event_type

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Any:
        return iter(sorted(self._types.values(), key=lambda t: t.name))

    def check(self, topic: str, type: str, data: Mapping[str, Any]) -> None:
        """Refuse an event of a declared type that breaks its contract."""
        declared = self._types.get(type)
        if declared is not None:
            declared.check(topic, data)

    def describe(self, ops: Iterable[ClientOp] = ()) -> dict[str, Any]:
        """The ``/ws`` events as a JSON document: per type its topic and payload schema;
        with the client ops the features carry out, per op its frame's schema."""
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "Diên Hồng /ws events",
            "description": (
                "Each event reaches a socket as {op: event, topic, seq, type, "
                "data, at}; data follows the schema of its type. Payloads may "
                "hold fields beyond those listed."
            ),
            "events": {t.name: {"topic": f"{t.topic}:{{id}}", "data": t.schema()} for t in self},
            "ops_description": (
                "Client ops: a frame {op, ref?, ...fields} is answered on the same socket "
                "by {op: ok, ref, data} or {op: error, ref, code, message} (codes from the "
                "HTTP error catalogue); ref is the client's own string or integer, echoed "
                "so that answers may come in any order."
            ),
            "ops": {op.name: op.schema() for op in sorted(ops, key=lambda o: o.name)},
        }


# The core's own events (organisation changes announced to the users and units concerned).
CORE_EVENT_TYPES = (
    EventType(
        "user.updated",
        "user",
        "An account changed (roles, unit, clearance, name, active); its clients "
        "refresh what they show of it, every node checks its sockets' access again.",
        {
            "id": "integer",
            "username": "string",
            "display_name": "string",
            "unit_id": "integer",
            "roles": "array",
            "clearance": "string",
            "active": "boolean",
        },
        {"is_unit_head": "boolean", "title": "string"},
    ),
    EventType(
        "user.sessions_ended",
        "user",
        "Every token of the account stopped working (signed out everywhere, password "
        "changed, deactivated): nodes drop its cached principal and close its sockets.",
        {
            "id": "integer",
            "username": "string",
            "display_name": "string",
            "unit_id": "integer",
            "roles": "array",
            "clearance": "string",
            "active": "boolean",
            "reason": "string",
        },
        {"is_unit_head": "boolean", "title": "string"},
    ),
    EventType(
        "document.signed",
        "meeting",
        "A document of the meeting (minutes, a result sheet) received a signature.",
        {
            "subject": "string",
            "kind": "string",
            "step": "string",
            "signer": "string",
            "certificate_sha256": "string",
            "sha256": "string",
            "next_step": "string|null",
        },
    ),
    EventType(
        "unit.updated",
        "unit",
        "A unit was renamed or moved in the tree.",
        {"id": "integer", "name": "string", "kind": "string", "parent_id": "integer|null"},
    ),
)
