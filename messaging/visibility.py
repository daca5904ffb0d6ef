"""Who may see what in messaging: each rule once, in its Python and SQL forms side by side.

The Python form judges one object already loaded (REST, attachments, the replay of
events); the SQL form is a condition over the object's table, for queries that must
never return, nor count, what the reader may not see (search, attachment checks, lists).
``tests/messaging/test_visibility.py`` checks that both forms agree for every role,
clearance and membership of a seeded city.

The rules:

* **clearance** — content at a confidentiality level is readable only by a holder of a
  clearance at or above it. Every other rule of a directive includes this one.
* **directive** — the *sender side* (the sender, and Standing Committee members of the
  sender's unit) and the directive's recipients may read it.
* **reply thread** — the sender side reads every unit's thread; a recipient reads the
  thread of the unit it was counted in.
* **channel membership** — a unit channel's members are the users of its unit; group
  and direct channels list theirs (``channel_members.member``).
* **message** — a member of its channel may read a message that was not retracted (the
  tombstone of a retracted one shows no text).
* **attachment** — a file attached to a directive, a reply or a message is readable by
  whoever may read one of them (SQL only: files are checked by id).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, exists, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from messaging.models import (
    Channel,
    ChannelKind,
    ChannelMember,
    Directive,
    DirectiveAttachment,
    DirectiveRecipient,
    DirectiveReply,
    Message,
    MessageAttachment,
    MessageState,
    ReplyAttachment,
)
from server.auth.principal import Principal
from server.org.models import Confidentiality, Role

# --- clearance -----------------------------------------------------------------------------


def cleared(principal: Principal, level: str | Confidentiality) -> bool:
    """Python: ``principal``'s clearance permits content at ``level``."""
    return principal.clearance.permits(Confidentiality(level))


def cleared_levels(principal: Principal) -> list[str]:
    """The levels ``principal`` may read, for ``column.in_(...)``."""
    return [level.value for level in Confidentiality if principal.clearance.permits(level)]


def cleared_sql(
    principal: Principal,
    level_column: ColumnElement[str] | InstrumentedAttribute[str],
) -> ColumnElement[bool]:
    """SQL: ``principal``'s clearance permits the level in ``level_column``."""
    return level_column.in_(cleared_levels(principal))


# --- directives ----------------------------------------------------------------------------


def is_sender_side(principal: Principal, directive: Directive) -> bool:
    """Python: the sender, or a cleared Standing Committee member of the sender's unit."""
    if not cleared(principal, directive.confidentiality):
        return False
    if principal.id == directive.sender_id:
        return True
    return principal.has_role(Role.STANDING) and principal.unit_id == directive.sender_unit_id


def sender_side_sql(principal: Principal) -> ColumnElement[bool]:
    """SQL over ``directives``: the form of ``is_sender_side``."""
    sides: list[ColumnElement[bool]] = [Directive.sender_id == principal.id]
    if principal.has_role(Role.STANDING):
        sides.append(Directive.sender_unit_id == principal.unit_id)
    return and_(cleared_sql(principal, Directive.confidentiality), or_(*sides))


def may_read_directive(
    principal: Principal, directive: Directive, recipient: DirectiveRecipient | None
) -> bool:
    """Python: ``recipient`` is the principal's recipient row of ``directive`` (or None)."""
    if is_sender_side(principal, directive):
        return True
    return recipient is not None and cleared(principal, directive.confidentiality)


def directive_readable_sql(principal: Principal) -> ColumnElement[bool]:
    """SQL over ``directives``: the form of ``may_read_directive``."""
    is_recipient = exists().where(
        DirectiveRecipient.directive_id == Directive.id, DirectiveRecipient.user_id == principal.id
    )
    return or_(
        sender_side_sql(principal),
        and_(cleared_sql(principal, Directive.confidentiality), is_recipient),
    )


def may_read_thread(
    principal: Principal,
    directive: Directive,
    recipient: DirectiveRecipient | None,
    thread_unit_id: int,
) -> bool:
    """Python: may ``principal`` read the reply thread of unit ``thread_unit_id``?"""
    if is_sender_side(principal, directive):
        return True
    return (
        recipient is not None
        and recipient.unit_id == thread_unit_id
        and cleared(principal, directive.confidentiality)
    )


def reply_readable_sql(principal: Principal) -> ColumnElement[bool]:
    """SQL over ``directive_replies`` joined to their ``directives``: ``may_read_thread``."""
    own_thread = exists().where(
        DirectiveRecipient.directive_id == Directive.id,
        DirectiveRecipient.user_id == principal.id,
        DirectiveRecipient.unit_id == DirectiveReply.unit_id,
    )
    return and_(
        Directive.id == DirectiveReply.directive_id,
        or_(
            sender_side_sql(principal),
            and_(cleared_sql(principal, Directive.confidentiality), own_thread),
        ),
    )


# The event a recipient gets on its ``user:`` topic when a directive is issued.
DIRECTIVE_ISSUED = "directive.issued"
# What of a directive a recipient no longer cleared for it still sees (as its inbox shows).
_RESTRICTED_FIELDS = (
    "id",
    "urgency",
    "confidentiality",
    "ack_required",
    "sender_id",
    "issued_at",
    "due_at",
    "recipient_count",
)


def issued_directive_as_seen(principal: Principal, data: dict[str, Any]) -> dict[str, Any] | None:
    """``directive.issued`` as ``principal`` may see it now (replayed from the log after
    its clearance was lowered): the inbox entry without title, body or attachments.
    None when the payload may be sent as it is."""
    directive = data.get("directive")
    if not isinstance(directive, dict):
        return None
    if cleared(principal, str(directive.get("confidentiality", Confidentiality.NONE.value))):
        return None
    restricted = {key: directive.get(key) for key in _RESTRICTED_FIELDS}
    return {"directive": restricted | {"title": None, "restricted": True}}


# Events about a directive that name its level (``confidentiality``) and show its title or
# a reply's text: replayed to a reader no longer cleared, they show neither.
DIRECTIVE_NEWS = (
    "directive.reply",
    "directive.reminder",
    "directive.escalated",
    "directive.overdue",
)


def directive_news_as_seen(principal: Principal, data: dict[str, Any]) -> dict[str, Any] | None:
    """A directive's reply, reminder, escalation or overdue notice as ``principal`` may see
    it now: without title or reply text when its clearance no longer permits the level.
    None when the payload may be sent as it is."""
    level = data.get("confidentiality")
    if not isinstance(level, str) or cleared(principal, level):
        return None
    shown = dict(data) | {"restricted": True}
    if "title" in shown:
        shown["title"] = None
    reply = shown.get("reply")
    if isinstance(reply, dict):
        shown["reply"] = reply | {"body": None, "attachment_ids": []}
    return shown


# --- channels and messages -----------------------------------------------------------------


def is_channel_member(
    principal: Principal, channel: Channel, member_row: ChannelMember | None
) -> bool:
    """Python: ``member_row`` is the principal's row of ``channel`` in channel_members."""
    if channel.kind == ChannelKind.UNIT.value:
        return channel.unit_id == principal.unit_id
    return member_row is not None and bool(member_row.member)


async def is_member(session: AsyncSession, principal: Principal, channel: Channel) -> bool:
    """``is_channel_member`` with the principal's row read from the database."""
    if channel.kind == ChannelKind.UNIT.value:
        return is_channel_member(principal, channel, None)
    row = await session.get(ChannelMember, (channel.id, principal.id))
    return is_channel_member(principal, channel, row)


def channel_member_sql(principal: Principal) -> ColumnElement[bool]:
    """SQL over ``channels``: the form of ``is_channel_member``."""
    return or_(
        and_(Channel.kind == ChannelKind.UNIT.value, Channel.unit_id == principal.unit_id),
        and_(
            Channel.kind != ChannelKind.UNIT.value,
            exists().where(
                ChannelMember.channel_id == Channel.id,
                ChannelMember.user_id == principal.id,
                ChannelMember.member.is_(True),
            ),
        ),
    )


def may_read_message(
    principal: Principal, channel: Channel, member_row: ChannelMember | None, message: Message
) -> bool:
    """Python: a member reads a message's text unless it was retracted."""
    return message.state != MessageState.RETRACTED.value and is_channel_member(
        principal, channel, member_row
    )


def message_readable_sql(principal: Principal) -> ColumnElement[bool]:
    """SQL over ``messages`` (joined to their ``channels``): ``may_read_message``."""
    return and_(
        Message.state != MessageState.RETRACTED.value,
        Channel.id == Message.channel_id,
        channel_member_sql(principal),
    )


# --- attachments ---------------------------------------------------------------------------


def _via_directive(principal: Principal, file_id: Any) -> Any:
    return exists().where(
        DirectiveAttachment.file_id == file_id,
        Directive.id == DirectiveAttachment.directive_id,
        directive_readable_sql(principal),
    )


def _via_reply(principal: Principal, file_id: Any) -> Any:
    return exists().where(
        ReplyAttachment.file_id == file_id,
        DirectiveReply.id == ReplyAttachment.reply_id,
        reply_readable_sql(principal),
    )


def _via_message(principal: Principal, file_id: Any) -> Any:
    return exists().where(
        MessageAttachment.file_id == file_id,
        Message.id == MessageAttachment.message_id,
        message_readable_sql(principal),
    )


def attachment_readable_sql(principal: Principal, file_id: Any) -> ColumnElement[bool]:
    """SQL: something of messaging ``principal`` may see attaches the file ``file_id`` (a
    value or a column, e.g. of ``search_documents``)."""
    return or_(
        _via_directive(principal, file_id),
        _via_reply(principal, file_id),
        _via_message(principal, file_id),
    )
