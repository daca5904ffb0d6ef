"""Who may read a file because a directive, a reply or a message attaches it.

Whoever may read a directive, a reply thread or a message (``messaging.visibility``) may
read the files it attaches: ``attachment_readable_sql`` is the feature's file access rule.

A file carries the confidentiality of the directives that attach it, so it can be attached
only where every reader is cleared for that: a confidential directive's attachment does
not go into a direct message with an uncleared user, nor into a directive of a lower level.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, union, update
from sqlalchemy.ext.asyncio import AsyncSession

from messaging.models import (
    Channel,
    ChannelKind,
    ChannelMember,
    Directive,
    DirectiveAttachment,
    DirectiveReply,
    MessageAttachment,
    ReplyAttachment,
    SearchDocument,
    SearchKind,
)
from messaging.search import fold, index_document
from server.context import Context, Write
from server.errors import Unprocessable
from server.files.models import StoredFile
from server.org.models import Confidentiality, User


async def index_attachments(
    session: AsyncSession, files: Sequence[StoredFile], at: datetime
) -> None:
    """Make the text of attached files searchable (by whoever may see where they are).

    The text is read again here, with a share lock on PostgreSQL: a PDF's text is stored
    after its upload (``server.files.text``), maybe while it is being attached; either
    this reads the stored text, or the transaction storing it sees this attachment
    (``reindex_attachment``)."""
    if not files:
        return
    rows = await session.execute(
        select(StoredFile.id, StoredFile.name, StoredFile.text)
        .where(StoredFile.id.in_([f.id for f in files]))
        .with_for_update(read=True)
    )
    current = {int(file_id): (name, text) for file_id, name, text in rows.all()}
    for f in files:
        name, text = current.get(f.id, (f.name, ""))
        await index_document(session, SearchKind.ATTACHMENT, f.id, f"{name}\n{text}", at)


async def reindex_attachment(w: Write, file_id: int, name: str, text: str) -> None:
    """``file_text_handlers`` entry: the text of a file was read after its upload; where
    the file is already attached (its search document exists), it becomes searchable."""
    await w.session.execute(
        update(SearchDocument)
        .where(
            SearchDocument.kind == SearchKind.ATTACHMENT.value,
            SearchDocument.object_id == file_id,
        )
        .values(folded=fold(f"{name}\n{text}"))
    )


async def attachment_levels(
    session: AsyncSession, file_ids: Sequence[int]
) -> dict[int, Confidentiality]:
    """The confidentiality each file carries: the highest level of a directive that
    attaches it, itself or through a reply (``none`` for a file no directive carries)."""
    levels = dict.fromkeys(file_ids, Confidentiality.NONE)
    if not file_ids:
        return levels
    ids = list(levels)
    via_directive = (
        select(DirectiveAttachment.file_id, Directive.confidentiality)
        .join(Directive, Directive.id == DirectiveAttachment.directive_id)
        .where(DirectiveAttachment.file_id.in_(ids))
    )
    via_reply = (
        select(ReplyAttachment.file_id, Directive.confidentiality)
        .join(DirectiveReply, DirectiveReply.id == ReplyAttachment.reply_id)
        .join(Directive, Directive.id == DirectiveReply.directive_id)
        .where(ReplyAttachment.file_id.in_(ids))
    )
    for stmt in (via_directive, via_reply):
        for file_id, level in (await session.execute(stmt)).all():
            found = Confidentiality(level)
            if found.rank > levels[file_id].rank:
                levels[file_id] = found
    return levels


async def channel_clearance(session: AsyncSession, channel: Channel) -> Confidentiality:
    """The lowest clearance among the channel's readers: what every one of them may read."""
    if channel.kind == ChannelKind.UNIT.value:
        stmt = select(User.clearance).where(User.unit_id == channel.unit_id, User.active.is_(True))
    else:
        stmt = (
            select(User.clearance)
            .join(ChannelMember, ChannelMember.user_id == User.id)
            .where(ChannelMember.channel_id == channel.id, ChannelMember.member.is_(True))
        )
    clearances = [Confidentiality(level) for level in (await session.execute(stmt)).scalars()]
    return min(clearances, key=lambda level: level.rank, default=Confidentiality.TOP_SECRET)


async def require_readers_cleared(
    session: AsyncSession,
    files: Sequence[StoredFile],
    readers_clearance: Confidentiality,
    place: str,
) -> None:
    """Refuse (422 ``attachment_too_confidential``) to attach a file to a place some of
    whose readers are not cleared for the confidentiality the file carries."""
    levels = await attachment_levels(session, [f.id for f in files])
    for f in files:
        level = levels[f.id]
        if not readers_clearance.permits(level):
            raise Unprocessable(
                f"File {f.id} is {level.value}; not every reader of this {place} may read it.",
                code="attachment_too_confidential",
                details={"file_id": f.id, "confidentiality": level.value},
            )


# Files indexed per transaction when attachments of an earlier release are made searchable.
INDEX_BATCH = 200


async def index_earlier_attachments(ctx: Context) -> int:
    """Make attachments that were attached before their text was searchable (an earlier
    release) searchable; returns how many were indexed. Runs at start-up."""
    attached = union(
        select(DirectiveAttachment.file_id),
        select(ReplyAttachment.file_id),
        select(MessageAttachment.file_id),
    )
    indexed = select(SearchDocument.object_id).where(
        SearchDocument.kind == SearchKind.ATTACHMENT.value
    )
    missing = (
        select(StoredFile)
        .where(StoredFile.id.in_(attached), StoredFile.id.not_in(indexed))
        .order_by(StoredFile.id)
        .limit(INDEX_BATCH)
    )
    done = 0
    while True:
        async with ctx.read() as session:
            if (await session.execute(missing)).first() is None:
                return done
        async with ctx.write() as w:
            files = (await w.session.execute(missing)).scalars().all()
            await index_attachments(w.session, files, w.now)
        done += len(files)
