"""The event types of messaging, as a contract (``server.realtime.contract``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from server.realtime.contract import OMIT, EventType, builds, payload

if TYPE_CHECKING:
    from server.context import Write
    from server.realtime.log import Event

DIRECTIVE_EVENTS = (
    EventType(
        "directive.issued",
        "user",
        "A directive reached this recipient's inbox (its body may be cut to "
        "DIENHONG_DIRECTIVE_EVENT_BODY_CHARS; body_truncated says so).",
        {"directive": "object"},
    ),
    EventType(
        "directive.reply",
        "user",
        "A unit reported back under a directive (to the sender and that unit).",
        {"directive_id": "integer", "reply": "object"},
        {"confidentiality": "string", "restricted": "boolean"},
    ),
    EventType(
        "directive.receipts",
        "user",
        "The sender's roll-up of delivered, read and acknowledged changed.",
        {"directive_id": "integer", "summary": "object"},
    ),
    EventType(
        "directive.reminder",
        "user",
        "A recipient has not acknowledged: a reminder.",
        {
            "directive_id": "integer",
            "title": "string|null",
            "urgency": "string",
            "reminder": "integer",
            "due_at": "string|null",
        },
        {"confidentiality": "string", "restricted": "boolean"},
    ),
    EventType(
        "directive.escalated",
        "user",
        "A unit is late: its head is told who has not acknowledged.",
        {
            "directive_id": "integer",
            "unit_id": "integer",
            "late_user_ids": "array",
            "reminders": "integer",
        },
        {"title": "string|null", "confidentiality": "string", "restricted": "boolean"},
    ),
    EventType(
        "directive.overdue",
        "user",
        "A directive is past due without every acknowledgement: to its sender with the "
        "late units (late, late_units), and to each recipient who has not acknowledged "
        "(urgency; the title only while cleared for it).",
        {"directive_id": "integer", "due_at": "string|null"},
        {
            "title": "string|null",
            "late": "integer",
            "late_units": "array",
            "urgency": "string",
            "confidentiality": "string",
            "restricted": "boolean",
        },
    ),
)

CHANNEL_EVENTS = (
    EventType("channel.created", "channel", "A channel was made.", {"channel": "object"}),
    EventType(
        "channel.added", "user", "The user was made a member of a channel.", {"channel": "object"}
    ),
    EventType(
        "message.posted",
        "channel",
        "A message was posted; its seq is this event's seq. Replayed after an edit "
        "or a retraction, it carries the current text or the tombstone.",
        {"message": "object"},
    ),
    EventType(
        "message.edited",
        "channel",
        "A message's new text (only the new one).",
        {"message": "object"},
    ),
    EventType(
        "message.retracted",
        "channel",
        "A message was retracted (the tombstone).",
        {"message": "object"},
    ),
)

EVENT_TYPES = (*DIRECTIVE_EVENTS, *CHANNEL_EVENTS)


def _inboxes(user_ids: Sequence[int]) -> list[str]:
    return [f"user:{user_id}" for user_id in user_ids]


# Builders: services emit a messaging event only through these (one per declared type).


@builds("directive.issued")
async def emit_directive_issued(
    w: Write, user_ids: Sequence[int], *, directive: dict[str, Any]
) -> dict[str, Event]:
    """To each recipient's inbox; returns each topic's event."""
    return await w.emit_many(_inboxes(user_ids), "directive.issued", payload(directive=directive))


@builds("directive.reply")
async def emit_directive_reply(
    w: Write, user_id: int, *, directive_id: int, confidentiality: str, reply: dict[str, Any]
) -> Event:
    return await w.emit(
        f"user:{user_id}",
        "directive.reply",
        payload(directive_id=directive_id, confidentiality=confidentiality, reply=reply),
    )


@builds("directive.receipts")
async def emit_directive_receipts(
    w: Write, user_id: int, *, directive_id: int, summary: dict[str, Any]
) -> Event:
    return await w.emit(
        f"user:{user_id}", "directive.receipts", payload(directive_id=directive_id, summary=summary)
    )


@builds("directive.reminder")
async def emit_directive_reminder(
    w: Write,
    user_id: int,
    *,
    directive_id: int,
    title: str | None,
    confidentiality: str,
    urgency: str,
    reminder: int,
    due_at: str | None,
) -> Event:
    return await w.emit(
        f"user:{user_id}",
        "directive.reminder",
        payload(
            directive_id=directive_id,
            title=title,
            confidentiality=confidentiality,
            urgency=urgency,
            reminder=reminder,
            due_at=due_at,
        ),
    )


@builds("directive.escalated")
async def emit_directive_escalated(
    w: Write,
    user_id: int,
    *,
    directive_id: int,
    unit_id: int,
    confidentiality: str,
    late_user_ids: list[int],
    reminders: int,
    title: str | None = OMIT,
) -> Event:
    """``title`` only to a unit head cleared for the directive."""
    return await w.emit(
        f"user:{user_id}",
        "directive.escalated",
        payload(
            directive_id=directive_id,
            unit_id=unit_id,
            confidentiality=confidentiality,
            late_user_ids=late_user_ids,
            reminders=reminders,
            title=title,
        ),
    )


@builds("directive.overdue")
async def emit_directive_overdue(
    w: Write,
    user_ids: Sequence[int],
    *,
    directive_id: int,
    confidentiality: str,
    due_at: str | None,
    title: str | None = OMIT,
    urgency: str = OMIT,
    late: int = OMIT,
    late_units: list[dict[str, Any]] = OMIT,
) -> dict[str, Event]:
    """To the sender with the late units (``late``, ``late_units``), or to recipients who
    have not acknowledged (``urgency``; ``title`` only while cleared for it)."""
    return await w.emit_many(
        _inboxes(user_ids),
        "directive.overdue",
        payload(
            directive_id=directive_id,
            title=title,
            urgency=urgency,
            confidentiality=confidentiality,
            due_at=due_at,
            late=late,
            late_units=late_units,
        ),
    )


@builds("channel.created")
async def emit_channel_created(w: Write, channel_id: int, *, channel: dict[str, Any]) -> Event:
    return await w.emit(f"channel:{channel_id}", "channel.created", payload(channel=channel))


@builds("channel.added")
async def emit_channel_added(w: Write, user_id: int, *, channel: dict[str, Any]) -> Event:
    return await w.emit(f"user:{user_id}", "channel.added", payload(channel=channel))


@builds("message.posted")
async def emit_message_posted(w: Write, channel_id: int, *, message: dict[str, Any]) -> Event:
    return await w.emit(f"channel:{channel_id}", "message.posted", payload(message=message))


@builds("message.edited")
async def emit_message_edited(w: Write, channel_id: int, *, message: dict[str, Any]) -> Event:
    return await w.emit(f"channel:{channel_id}", "message.edited", payload(message=message))


@builds("message.retracted")
async def emit_message_retracted(w: Write, channel_id: int, *, message: dict[str, Any]) -> Event:
    return await w.emit(f"channel:{channel_id}", "message.retracted", payload(message=message))
