"""The event types of messaging, as a contract (``server.realtime.contract``)."""

from __future__ import annotations

from server.realtime.contract import EventType

DIRECTIVE_EVENTS = (
    EventType("directive.issued", "user",
              "A directive reached this recipient's inbox (its body may be cut to "
              "DIENHONG_DIRECTIVE_EVENT_BODY_CHARS; body_truncated says so).",
              {"directive": "object"}),
    EventType("directive.reply", "user",
              "A unit reported back under a directive (to the sender and that unit).",
              {"directive_id": "integer", "reply": "object"},
              {"confidentiality": "string", "restricted": "boolean"}),
    EventType("directive.receipts", "user",
              "The sender's roll-up of delivered, read and acknowledged changed.",
              {"directive_id": "integer", "summary": "object"}),
    EventType("directive.reminder", "user",
              "A recipient has not acknowledged: a reminder.",
              {"directive_id": "integer", "title": "string|null", "urgency": "string",
               "reminder": "integer", "due_at": "string|null"},
              {"confidentiality": "string", "restricted": "boolean"}),
    EventType("directive.escalated", "user",
              "A unit is late: its head is told who has not acknowledged.",
              {"directive_id": "integer", "unit_id": "integer", "late_user_ids": "array",
               "reminders": "integer"},
              {"title": "string|null", "confidentiality": "string",
               "restricted": "boolean"}),
    EventType("directive.overdue", "user",
              "A directive is past due without every acknowledgement: to its sender with the "
              "late units (late, late_units), and to each recipient who has not acknowledged "
              "(urgency; the title only while cleared for it).",
              {"directive_id": "integer", "due_at": "string|null"},
              {"title": "string|null", "late": "integer", "late_units": "array",
               "urgency": "string", "confidentiality": "string", "restricted": "boolean"}),
)

CHANNEL_EVENTS = (
    EventType("channel.created", "channel", "A channel was made.", {"channel": "object"}),
    EventType("channel.added", "user", "The user was made a member of a channel.",
              {"channel": "object"}),
    EventType("message.posted", "channel",
              "A message was posted; its seq is this event's seq. Replayed after an edit "
              "or a retraction, it carries the current text or the tombstone.",
              {"message": "object"}),
    EventType("message.edited", "channel", "A message's new text (only the new one).",
              {"message": "object"}),
    EventType("message.retracted", "channel", "A message was retracted (the tombstone).",
              {"message": "object"}),
)

EVENT_TYPES = (*DIRECTIVE_EVENTS, *CHANNEL_EVENTS)
