"""Who may read a file because a directive, a reply or a message attaches it.

``file_access_checks`` entry: recipients of a directive cleared for its level (and the
sender side), the parties of a reply thread (the sender side and the recipients of that
unit), and the members of a channel (unless the message was retracted).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, exists, or_, select
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
from server.context import Context
from server.org.models import Confidentiality, Role


def _directive_party(principal: Principal,
                     unit_of_thread: InstrumentedAttribute[int] | None = None,
                     ) -> ColumnElement[bool]:
    """SQL: ``principal`` is on the sender side of ``Directive`` or one of its recipients
    (of the thread's unit, when given)."""
    recipient: list[ColumnElement[bool]] = [DirectiveRecipient.directive_id == Directive.id,
                 DirectiveRecipient.user_id == principal.id]
    if unit_of_thread is not None:
        recipient.append(DirectiveRecipient.unit_id == unit_of_thread)
    sides: list[ColumnElement[bool]] = [Directive.sender_id == principal.id,
                                        exists().where(*recipient)]
    if principal.has_role(Role.STANDING):
        sides.append(Directive.sender_unit_id == principal.unit_id)
    cleared = [level.value for level in Confidentiality if principal.clearance.permits(level)]
    return and_(Directive.confidentiality.in_(cleared), or_(*sides))


async def may_read_attachment(ctx: Context, principal: Principal, file_id: int) -> bool:
    """True when something of messaging the user may see attaches the file."""
    via_directive = exists().where(
        DirectiveAttachment.file_id == file_id,
        Directive.id == DirectiveAttachment.directive_id,
        _directive_party(principal),
    )
    via_reply = exists().where(
        ReplyAttachment.file_id == file_id,
        DirectiveReply.id == ReplyAttachment.reply_id,
        Directive.id == DirectiveReply.directive_id,
        _directive_party(principal, DirectiveReply.unit_id),
    )
    via_message = exists().where(
        MessageAttachment.file_id == file_id,
        Message.id == MessageAttachment.message_id,
        Message.state != MessageState.RETRACTED.value,
        Channel.id == Message.channel_id,
        or_(
            and_(Channel.kind == ChannelKind.UNIT.value, Channel.unit_id == principal.unit_id),
            exists().where(ChannelMember.channel_id == Channel.id,
                           ChannelMember.user_id == principal.id,
                           ChannelMember.member.is_(True)),
        ),
    )
    async with ctx.read() as session:
        found = await session.execute(select(or_(via_directive, via_reply, via_message)))
        return bool(found.scalar())
