"""Replies: a recipient unit reports back or asks for guidance under a directive.

There is one thread per (directive, recipient unit). The sender side sees and answers every
thread; a recipient sees only its own unit's thread; other units are refused. A new reply
goes as ``directive.reply`` to the sender and to every recipient of that unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from messaging.attachments import index_attachments, require_readers_cleared
from messaging.directives import iso, require_access, utf8_len
from messaging.events import emit_directive_reply
from messaging.models import DirectiveRecipient, DirectiveReply, ReplyAttachment, SearchKind
from messaging.search import index_document
from messaging.senders import sender_card, sender_cards, unknown_card
from server.auth.principal import Principal
from server.context import Context
from server.errors import Forbidden, PayloadTooLarge, Unprocessable
from server.files.service import require_attachable
from server.org.models import Confidentiality

# Replies per page of a thread.
MAX_PAGE = 500


def reply_json(reply: DirectiveReply, author: dict[str, Any]) -> dict[str, Any]:
    """A reply as the API and its events show it; ``author`` is the author's card."""
    return {
        "id": reply.id, "directive_id": reply.directive_id, "unit_id": reply.unit_id,
        "author_id": reply.author_id, "author_name": author["display_name"],
        "sender": author, "body": reply.body,
        "attachment_ids": list(reply.attachment_ids or []), "created_at": iso(reply.created_at),
    }


async def post_reply(ctx: Context, actor: Principal, directive_id: int, *, body: str,
                     attachment_ids: Sequence[int], unit_id: int | None) -> dict[str, Any]:
    """Add a reply to the actor's unit thread (or, for the sender side, to ``unit_id``'s)."""
    if utf8_len(body) > ctx.settings.max_message_bytes:
        raise PayloadTooLarge(f"The reply is over {ctx.settings.max_message_bytes} bytes.",
                              code="body_too_large")
    async with ctx.write() as w:
        session = w.session
        access = await require_access(session, actor, directive_id)
        directive = access.directive
        if access.recipient is not None and not access.sender_side:
            thread_unit = access.recipient.unit_id
            if unit_id is not None and unit_id != thread_unit:
                raise Forbidden("You may only write in your own unit's thread.",
                                code="not_your_thread")
        else:
            if unit_id is None:
                raise Unprocessable("Say which unit's thread to answer in (unit_id).",
                                    code="unit_required")
            thread_unit = unit_id
        members = (await session.execute(
            select(DirectiveRecipient.user_id)
            .where(DirectiveRecipient.directive_id == directive.id,
                   DirectiveRecipient.unit_id == thread_unit)
        )).scalars().all()
        if not members:
            raise Unprocessable(f"Unit {thread_unit} is not a recipient of this directive.",
                                code="unknown_thread")
        files = await require_attachable(ctx, session, actor, list(attachment_ids))
        await require_readers_cleared(session, files,
                                      Confidentiality(directive.confidentiality), "thread")
        await index_attachments(session, files, w.now)
        reply = DirectiveReply(directive_id=directive.id, unit_id=thread_unit,
                               author_id=actor.id, body=body,
                               attachment_ids=[f.id for f in files], created_at=w.now)
        session.add(reply)
        await session.flush()
        for f in files:
            session.add(ReplyAttachment(reply_id=reply.id, file_id=f.id))
        author = await sender_card(session, actor.id)
        payload = {"directive_id": directive.id, "confidentiality": directive.confidentiality,
                   "reply": reply_json(reply, author)}
        for user_id in sorted({directive.sender_id, *members}):
            await emit_directive_reply(w, user_id, **payload)
        await index_document(session, SearchKind.REPLY, reply.id, body, w.now)
        await w.audit(actor.id, "directive.reply", f"directive:{directive.id}",
                      {"reply_id": reply.id, "unit_id": thread_unit,
                       "attachments": [f.id for f in files]})
        return reply_json(reply, author)


async def list_replies(ctx: Context, actor: Principal, directive_id: int, *,
                       unit_id: int | None) -> list[dict[str, Any]]:
    """The threads the actor may see: all for the sender side, its unit's otherwise."""
    async with ctx.read() as session:
        access = await require_access(session, actor, directive_id)
        stmt = select(DirectiveReply).where(DirectiveReply.directive_id == directive_id)
        if not access.sender_side:
            assert access.recipient is not None
            own = access.recipient.unit_id
            if unit_id is not None and unit_id != own:
                raise Forbidden("You may only read your own unit's thread.",
                                code="not_your_thread")
            stmt = stmt.where(DirectiveReply.unit_id == own)
        elif unit_id is not None:
            stmt = stmt.where(DirectiveReply.unit_id == unit_id)
        rows = (await session.execute(
            stmt.order_by(DirectiveReply.id).limit(MAX_PAGE))).scalars().all()
        cards = await sender_cards(session, (row.author_id for row in rows))
        return [reply_json(row, cards.get(row.author_id) or unknown_card(row.author_id))
                for row in rows]
