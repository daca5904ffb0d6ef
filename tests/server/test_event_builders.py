"""Every event goes out through its feature's typed builder: no service calls ``w.emit``
itself, each declared type has exactly one builder, each builder emits only its own type,
and what a builder emits satisfies the declaration (with and without its optional fields)."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import meeting.events
import messaging.events
import server.events
from server.realtime.contract import CORE_EVENT_TYPES, OMIT, EventRegistry, EventType

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("messaging", "meeting", "server")
EVENTS_MODULES = (messaging.events, meeting.events, server.events)
# Where ``Write.emit``/``emit_many`` are defined (and shown in the module's docstring).
DEFINITION = ROOT / "server" / "context.py"

REGISTRY = EventRegistry(
    (*CORE_EVENT_TYPES, *messaging.events.EVENT_TYPES, *meeting.events.EVENT_TYPES)
)


def _sources() -> Iterator[tuple[Path, ast.Module]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path, ast.parse(path.read_text(encoding="utf-8"), str(path))


def _emit_calls(tree: ast.AST) -> Iterator[ast.Call]:
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("emit", "emit_many")
        ):
            yield node


def _builders() -> dict[str, Callable[..., Any]]:
    found: dict[str, Callable[..., Any]] = {}
    for module in EVENTS_MODULES:
        for _, function in inspect.getmembers(module, inspect.iscoroutinefunction):
            name = getattr(function, "event_type", None)
            if name is not None and function.__module__ == module.__name__:
                assert name not in found, f"{name} has two builders"
                found[name] = function
    return found


BUILDERS = _builders()


def test_services_emit_only_through_the_builders() -> None:
    builder_files = {Path(module.__file__ or "").resolve() for module in EVENTS_MODULES}
    outside = [
        f"{path.relative_to(ROOT)}:{call.lineno}"
        for path, tree in _sources()
        if path.resolve() not in builder_files and path.resolve() != DEFINITION
        for call in _emit_calls(tree)
    ]
    assert outside == [], f"events emitted without their builder: {outside}"


def test_every_emitted_type_is_declared_and_each_builder_emits_its_own() -> None:
    emitted: set[str] = set()
    for module in EVENTS_MODULES:
        tree = ast.parse(Path(module.__file__ or "").read_text(encoding="utf-8"))
        for function in ast.walk(tree):
            if not isinstance(function, ast.AsyncFunctionDef):
                continue
            marks = [
                d.args[0].value
                for d in function.decorator_list
                if isinstance(d, ast.Call)
                and isinstance(d.func, ast.Name)
                and d.func.id == "builds"
                and isinstance(d.args[0], ast.Constant)
            ]
            named = {
                node.value
                for node in ast.walk(function)
                if isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and _looks_like_type(node)
            }
            for call in _emit_calls(function):
                kind = call.args[1] if len(call.args) > 1 else None
                if isinstance(kind, ast.Constant):
                    emitted.add(kind.value)
                else:
                    # Only a shared helper passes the type on; its callers name it.
                    assert not marks, f"{function.name} emits a type it does not name"
            if marks:
                assert named == {marks[0]}, f"{function.name} emits {named}, not {marks}"
                emitted.add(marks[0])
    undeclared = sorted(name for name in emitted if name not in REGISTRY)
    assert undeclared == []
    assert set(BUILDERS) == {t.name for t in REGISTRY}, "a declared type has no builder"


def _looks_like_type(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and "." in node.value
        and " " not in node.value
        and node.value.split(".")[0].isidentifier()
        and node.value.split(".")[-1].isidentifier()
    )


class _Recorder:
    """Stands in for ``Write``: keeps what a builder emits."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []

    async def emit(self, topic: str, type: str, data: dict[str, Any]) -> None:
        self.sent.append((topic, type, data))

    async def emit_many(
        self, topics: Sequence[str], type: str, data: dict[str, Any]
    ) -> dict[str, None]:
        self.sent.extend((topic, type, data) for topic in topics)
        return dict.fromkeys(topics)


_SAMPLES: dict[str, Any] = {
    "int": 7,
    "str": "meeting:7",
    "float": 1.5,
    "bool": True,
}


def _sample(name: str, annotation: str, declared: EventType) -> Any:
    first = annotation.split("|")[0].strip()
    if first in _SAMPLES:
        return _SAMPLES[first]
    if first.startswith(("list", "Sequence")):
        return [3, 4] if name.endswith("ids") else []
    if first.startswith(("dict", "Mapping")):
        if name in declared.fields or name in declared.optional:
            return {}
        # The object a whole payload is made of: one of each declared field.
        return {field: _of_type(types) for field, types in declared.fields.items()}
    raise AssertionError(f"no sample for {name}: {annotation}")


def _of_type(types: str) -> Any:
    return {
        "integer": 1,
        "string": "a",
        "object": {},
        "array": [],
        "boolean": False,
        "number": 1.0,
        "null": None,
    }[types.split("|")[0]]


@pytest.mark.parametrize("name", sorted(BUILDERS))
async def test_each_builder_emits_a_payload_its_declaration_accepts(name: str) -> None:
    builder = BUILDERS[name]
    declared = next(t for t in REGISTRY if t.name == name)
    parameters = list(inspect.signature(builder).parameters.values())[1:]
    required = {
        p.name: _sample(p.name, str(p.annotation), declared)
        for p in parameters
        if p.default is inspect.Parameter.empty
    }
    optional = {
        p.name: _sample(p.name, str(p.annotation), declared)
        for p in parameters
        if p.default is not inspect.Parameter.empty
    }
    assert all(p.default is OMIT for p in parameters if p.default is not inspect.Parameter.empty)
    for arguments in (required, required | optional):
        w = _Recorder()
        positional = [
            arguments[p.name]
            for p in parameters
            if p.kind is p.POSITIONAL_OR_KEYWORD and p.name in arguments
        ]
        keywords = {
            p.name: arguments[p.name]
            for p in parameters
            if p.kind is p.KEYWORD_ONLY and p.name in arguments
        }
        await builder(w, *positional, **keywords)
        assert w.sent, f"{name} emitted nothing"
        for topic, type, data in w.sent:
            assert type == name
            REGISTRY.check(topic, type, data)
        # Fields left out stay out of the payload; given ones are in it.
        data = w.sent[0][2]
        assert not any(value is OMIT for value in data.values())
        for field in (*declared.fields, *declared.optional):
            if field in keywords:
                assert data[field] == keywords[field]
