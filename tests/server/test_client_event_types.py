"""Every event type the web client handles exists: the pages' scripts are read for the types
they test (``case "poll.opened":``, ``type === "…"``, ``type.startsWith("speaker")``) and
each must be a declared event type, or, inside a signal handler, a signal the server sends."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import meeting.events
import messaging.events
from server.realtime.contract import CORE_EVENT_TYPES

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "web_client" / "static"
DECLARED = {
    t.name for t in (*CORE_EVENT_TYPES, *messaging.events.EVENT_TYPES, *meeting.events.EVENT_TYPES)
}

# A type compared for equality or matched by a case label, and a family matched by prefix.
EXACT = re.compile(r"""(?:case\s+|\btype\s*[!=]==?\s*)["']([a-z_]+\.[a-z_.]+)["']""")
PREFIX = re.compile(r"""\btype\.startsWith\(\s*["']([a-z_]+)["']\s*\)""")
# A function that handles ephemeral signals, not events (``onSignal`` in chat.js).
SIGNAL_HANDLER = re.compile(r"function\s+onSignal\s*\([^)]*\)\s*\{")


def _scripts() -> dict[str, str]:
    scripts = {
        str(p.relative_to(STATIC)): p.read_text(encoding="utf-8")
        for p in sorted(STATIC.rglob("*.js"))
    }
    for page in sorted(STATIC.rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        for index, inline in enumerate(re.findall(r"<script[^>]*>(.*?)</script>", text, re.S)):
            scripts[f"{page.relative_to(STATIC)}#{index}"] = inline
    return scripts


def _split_signal_handlers(source: str) -> tuple[str, str]:
    """``source`` without its signal handlers' bodies, and those bodies."""
    signals = []
    while (match := SIGNAL_HANDLER.search(source)) is not None:
        depth, end = 1, match.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(source[end], 0)
            end += 1
        signals.append(source[match.start() : end])
        source = source[: match.start()] + source[end:]
    return source, "\n".join(signals)


def _signals_sent() -> set[str]:
    """Signal types the server sends: the literal type of every ``ctx.signal`` call."""
    sent = set()
    for package in ("messaging", "meeting", "server"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "signal"
                    and len(node.args) > 1
                    and isinstance(node.args[1], ast.Constant)
                ):
                    sent.add(node.args[1].value)
    return sent


def _handled() -> tuple[dict[str, set[str]], dict[str, set[str]], dict[str, set[str]]]:
    events: dict[str, set[str]] = {}
    prefixes: dict[str, set[str]] = {}
    signals: dict[str, set[str]] = {}
    for name, source in _scripts().items():
        rest, signal_code = _split_signal_handlers(source)
        for found, text, pattern in (
            (events, rest, EXACT),
            (prefixes, rest, PREFIX),
            (signals, signal_code, EXACT),
        ):
            for match in pattern.findall(text):
                found.setdefault(match, set()).add(name)
    return events, prefixes, signals


def test_the_reading_finds_what_a_page_handles() -> None:
    source = (
        'switch (event.type) { case "poll.opened": break; }\n'
        'if (type === "speaker.time_up" || type.startsWith("agenda")) x();\n'
        'function onSignal(frame) { if (frame.type === "presence.changed") { y(); } }\n'
        'if (type !== "poll.closed") z();\n'
    )
    rest, signal_code = _split_signal_handlers(source)
    assert set(EXACT.findall(rest)) == {"poll.opened", "speaker.time_up", "poll.closed"}
    assert PREFIX.findall(rest) == ["agenda"]
    assert EXACT.findall(signal_code) == ["presence.changed"]


def test_every_event_type_a_client_handles_is_declared() -> None:
    events, prefixes, signals = _handled()
    # The pages handle the meeting, chat and directive events (a sanity check on the reading).
    assert {"poll.opened", "participants.changed", "directive.issued", "message.posted"} <= set(
        events
    )
    unknown = {name: sorted(where) for name, where in events.items() if name not in DECLARED}
    assert unknown == {}, f"the client handles event types nothing declares: {unknown}"
    families = {
        name: sorted(where)
        for name, where in prefixes.items()
        if not any(t.startswith(name) for t in DECLARED)
    }
    assert families == {}, f"the client handles event families nothing declares: {families}"
    sent = _signals_sent()
    strangers = {name: sorted(where) for name, where in signals.items() if name not in sent}
    assert strangers == {}, f"the client handles signals the server never sends: {strangers}"
