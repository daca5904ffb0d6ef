"""Who may read a file because a directive, a reply or a message attaches it.

``file_access_checks`` entry: whoever may read a directive, a reply thread or a message
(``messaging.visibility``) may read the files it attaches.
"""

from __future__ import annotations

from sqlalchemy import exists, or_, select

from messaging.models import (
    Directive,
    DirectiveAttachment,
    DirectiveReply,
    Message,
    MessageAttachment,
    ReplyAttachment,
)
from messaging.visibility import directive_readable_sql, message_readable_sql, reply_readable_sql
from server.auth.principal import Principal
from server.context import Context


async def may_read_attachment(ctx: Context, principal: Principal, file_id: int) -> bool:
    """True when something of messaging the user may see attaches the file."""
    via_directive = exists().where(
        DirectiveAttachment.file_id == file_id,
        Directive.id == DirectiveAttachment.directive_id,
        directive_readable_sql(principal),
    )
    via_reply = exists().where(
        ReplyAttachment.file_id == file_id,
        DirectiveReply.id == ReplyAttachment.reply_id,
        reply_readable_sql(principal),
    )
    via_message = exists().where(
        MessageAttachment.file_id == file_id,
        Message.id == MessageAttachment.message_id,
        message_readable_sql(principal),
    )
    async with ctx.read() as session:
        found = await session.execute(select(or_(via_directive, via_reply, via_message)))
        return bool(found.scalar())
