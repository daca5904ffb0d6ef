"""Replies: a recipient unit reports back or asks for guidance under a directive.

There is one thread per (directive, recipient unit). The sender side sees and answers every
thread; a recipient sees only its own unit's thread; other units are refused. A new reply
goes as ``directive.reply`` to the sender and to every recipient of that unit.

Replies are written as a partitioned write (``server.context``): ``prepare`` finds each
reply's thread and the inboxes it goes to, and reserves all of them at once, in sorted
order; the rest of the batch only adds rows (the replies, their search text) and its audit
records come last. Replies from many units so run beside the channel posts of every node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from messaging.attachments import index_attachments, require_readers_cleared
from messaging.directives import DirectiveAccess, iso, require_access, utf8_len
from messaging.events import emit_directive_reply
from messaging.models import DirectiveRecipient, DirectiveReply, ReplyAttachment, SearchKind
from messaging.runtime import messaging_runtime
from messaging.search import index_document
from messaging.senders import sender_card, sender_cards, unknown_card
from server.audit import AuditEntry
from server.auth.principal import Principal
from server.context import Context, Write
from server.errors import ApiError, Forbidden, NotFound, PayloadTooLarge, Unprocessable
from server.files.service import require_attachable
from server.group_commit import Applied, GroupCommit, is_stored_id, require_encodable
from server.org.models import Confidentiality

# Replies per page of a thread.
MAX_PAGE = 500


def reply_json(reply: DirectiveReply, author: dict[str, Any]) -> dict[str, Any]:
    """A reply as the API and its events show it; ``author`` is the author's card."""
    return {
        "id": reply.id,
        "directive_id": reply.directive_id,
        "unit_id": reply.unit_id,
        "author_id": reply.author_id,
        "author_name": author["display_name"],
        "sender": author,
        "body": reply.body,
        "attachment_ids": list(reply.attachment_ids or []),
        "created_at": iso(reply.created_at),
    }


@dataclass(frozen=True)
class ReplyRequest:
    actor: Principal
    directive_id: int
    body: str
    attachment_ids: tuple[int, ...]
    unit_id: int | None


@dataclass(frozen=True)
class _Thread:
    """Where one reply goes: its thread's unit and the users of that unit's recipients."""

    access: DirectiveAccess
    unit_id: int
    members: tuple[int, ...]

    @property
    def inboxes(self) -> list[int]:
        """The users the reply goes to: the sender and the thread's recipients."""
        return sorted({self.access.directive.sender_id, *self.members})


# Each request's thread (or why it is refused), by the request object's id.
_Threads = dict[int, _Thread | ApiError]


async def _thread(session: AsyncSession, item: ReplyRequest) -> _Thread:
    """The thread ``item`` writes in, if its author may write there."""
    actor, unit_id = item.actor, item.unit_id
    access = await require_access(session, actor, item.directive_id)
    if access.recipient is not None and not access.sender_side:
        thread_unit = access.recipient.unit_id
        if unit_id is not None and unit_id != thread_unit:
            raise Forbidden("You may only write in your own unit's thread.", code="not_your_thread")
    else:
        if unit_id is None:
            raise Unprocessable(
                "Say which unit's thread to answer in (unit_id).", code="unit_required"
            )
        thread_unit = unit_id
    members = (
        (
            await session.execute(
                select(DirectiveRecipient.user_id).where(
                    DirectiveRecipient.directive_id == access.directive.id,
                    DirectiveRecipient.unit_id == thread_unit,
                )
            )
        )
        .scalars()
        .all()
    )
    if not members:
        raise Unprocessable(
            f"Unit {thread_unit} is not a recipient of this directive.", code="unknown_thread"
        )
    return _Thread(access, thread_unit, tuple(members))


class ReplyWriter(GroupCommit[ReplyRequest, _Threads, dict[str, Any]]):
    """Replies under directives, group-committed (``server.group_commit``): a whole city's
    units reporting back within minutes cost a handful of transactions and fsyncs."""

    what = "replies"
    partitioned = True

    def __init__(self, ctx: Context) -> None:
        super().__init__(
            ctx, batch_size=ctx.settings.message_batch, queue_limit=ctx.settings.message_queue_limit
        )

    def judge(self, item: ReplyRequest) -> None:
        require_encodable(item.body, "body")
        limit = self.ctx.settings.max_message_bytes
        if utf8_len(item.body) > limit:
            raise PayloadTooLarge(f"The reply is over {limit} bytes.", code="body_too_large")
        if not is_stored_id(item.directive_id):
            raise NotFound(
                f"Directive {item.directive_id} does not exist.", code="directive_not_found"
            )

    def should_retry(self, error: BaseException) -> bool:
        # Another node indexed the same attached file meanwhile: written again alone, the
        # reply finds its search row and replaces it.
        return isinstance(error, IntegrityError) or super().should_retry(error)

    async def prepare(self, w: Write, items: Sequence[ReplyRequest]) -> _Threads:
        # Directives and their recipients change only in exclusive writes, which do not
        # run beside this one: what is read here holds until the commit.
        threads: _Threads = {}
        for item in items:
            try:
                threads[id(item)] = await _thread(w.session, item)
            except ApiError as exc:
                threads[id(item)] = exc
        # Every inbox the batch writes to, locked now, in one statement, in sorted order.
        await w.reserve_topics(
            [
                f"user:{user_id}"
                for thread in threads.values()
                if isinstance(thread, _Thread)
                for user_id in thread.inboxes
            ]
        )
        return threads

    async def apply(
        self, w: Write, item: ReplyRequest, prepared: _Threads
    ) -> Applied[dict[str, Any]]:
        session = w.session
        actor = item.actor
        thread = prepared[id(item)]
        if isinstance(thread, ApiError):
            raise thread
        directive, thread_unit = thread.access.directive, thread.unit_id
        files = await require_attachable(self.ctx, session, actor, list(item.attachment_ids))
        await require_readers_cleared(
            session, files, Confidentiality(directive.confidentiality), "thread"
        )
        await index_attachments(session, files, w.now)
        reply = DirectiveReply(
            directive_id=directive.id,
            unit_id=thread_unit,
            author_id=actor.id,
            body=item.body,
            attachment_ids=[f.id for f in files],
            created_at=w.now,
        )
        session.add(reply)
        await session.flush()
        for f in files:
            session.add(ReplyAttachment(reply_id=reply.id, file_id=f.id))
        author = await sender_card(session, actor.id)
        payload: dict[str, Any] = {
            "directive_id": directive.id,
            "confidentiality": directive.confidentiality,
            "reply": reply_json(reply, author),
        }
        for user_id in thread.inboxes:
            await emit_directive_reply(w, user_id, **payload)
        await index_document(session, SearchKind.REPLY, reply.id, item.body, w.now)
        audit = AuditEntry(
            actor.id,
            "directive.reply",
            f"directive:{directive.id}",
            {"reply_id": reply.id, "unit_id": thread_unit, "attachments": [f.id for f in files]},
        )
        return Applied(reply_json(reply, author), audit=[audit])


def _writer(ctx: Context) -> ReplyWriter:
    runtime = messaging_runtime(ctx)
    assert runtime is not None, "the messaging feature's start-up installs its runtime"
    return runtime.replies


async def post_reply(
    ctx: Context,
    actor: Principal,
    directive_id: int,
    *,
    body: str,
    attachment_ids: Sequence[int],
    unit_id: int | None,
) -> dict[str, Any]:
    """Add a reply to the actor's unit thread (or, for the sender side, to ``unit_id``'s)."""
    return await _writer(ctx).submit(
        ReplyRequest(actor, directive_id, body, tuple(attachment_ids), unit_id)
    )


async def run_reply_writer(ctx: Context) -> None:
    """``Feature.background`` entry: this node's writer of replies."""
    await _writer(ctx).run()


async def list_replies(
    ctx: Context, actor: Principal, directive_id: int, *, unit_id: int | None
) -> list[dict[str, Any]]:
    """The threads the actor may see: all for the sender side, its unit's otherwise."""
    async with ctx.read() as session:
        access = await require_access(session, actor, directive_id)
        stmt = select(DirectiveReply).where(DirectiveReply.directive_id == directive_id)
        if not access.sender_side:
            assert access.recipient is not None
            own = access.recipient.unit_id
            if unit_id is not None and unit_id != own:
                raise Forbidden("You may only read your own unit's thread.", code="not_your_thread")
            stmt = stmt.where(DirectiveReply.unit_id == own)
        elif unit_id is not None:
            stmt = stmt.where(DirectiveReply.unit_id == unit_id)
        rows = (
            (await session.execute(stmt.order_by(DirectiveReply.id).limit(MAX_PAGE)))
            .scalars()
            .all()
        )
        cards = await sender_cards(session, (row.author_id for row in rows))
        return [
            reply_json(row, cards.get(row.author_id) or unknown_card(row.author_id)) for row in rows
        ]
