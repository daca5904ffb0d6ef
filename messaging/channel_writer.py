"""Message posts and edits, group-committed (``server.group_commit``).

A whole council posting at once, an import, a storm of edits: one transaction each would
queue every post behind the one writer, and each would pay its own commit (an fsync).
The node's ``ChannelWriter`` takes what queued meanwhile and writes it in one transaction:

* judged alone before the queue: size, empty text, text that cannot be encoded, ids
  beyond what the database stores;
* ``prepare`` reads what the batch shares in a few statements: its channels, the authors'
  member rows and cards, the posts already stored under the batch's ``client_msg_id``s;
* each post or edit then runs in its own savepoint: a refusal (not a member, a reused
  ``client_msg_id``, an unknown ``reply_to``) fails that request alone;
* the edits' audit records are chained in one step; events go out after the commit.

It is a partitioned write (``server.context``): ``prepare`` reserves the counters of the
batch's channels before reading anything it then relies on (members, posts stored under
the batch's ``client_msg_id``s), a post or an edit changes only rows of its channel (its
messages, their search text, the author's read position) and rows it locks after them
(an attached file's search text), and the audit records come last. On PostgreSQL the
batches of every node so run side by side; two of them meet only on a shared channel,
where the second waits for the first and then sees its posts (a repeated
``client_msg_id`` answers the stored post; the unique key on (channel, author,
``client_msg_id``) backs that up, and a lost race is written again alone).

What a post or an edit means (idempotency, versions, the event log rewritten to the
current text) is the same as before; see ``messaging.channels``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.exc import IntegrityError

from messaging.attachments import channel_clearance, index_attachments, require_readers_cleared
from messaging.channels import (
    channel_topic,
    message_json,
    message_versions,
    move_read_positions,
    replace_earlier_events,
)
from messaging.directives import utf8_len
from messaging.events import emit_message_edited, emit_message_posted
from messaging.models import (
    Channel,
    ChannelKind,
    ChannelMember,
    Message,
    MessageAttachment,
    MessageState,
    MessageVersion,
    SearchKind,
)
from messaging.runtime import messaging_runtime
from messaging.search import fold, index_document, index_new_documents
from messaging.senders import sender_cards, unknown_card
from messaging.visibility import is_channel_member
from server.audit import AuditEntry
from server.auth.principal import Principal
from server.context import Context, Write
from server.errors import Conflict, Forbidden, NotFound, PayloadTooLarge, Unprocessable
from server.files.models import StoredFile
from server.files.service import require_attachable
from server.group_commit import Applied, GroupCommit, is_stored_id, require_encodable

# Rows per ``IN (...)`` of a batch's reads (far under both databases' parameter limits).
CHUNK = 500


@dataclass(frozen=True)
class PostRequest:
    actor: Principal
    channel_id: int
    body: str
    client_msg_id: str
    reply_to: int | None
    attachment_ids: tuple[int, ...]
    # The body's search text (``messaging.search.fold``), made by the request before the
    # batch: the batch's transaction only stores it.
    folded: str = ""


@dataclass(frozen=True)
class EditRequest:
    actor: Principal
    channel_id: int
    message_id: int
    body: str


ChannelWrite = PostRequest | EditRequest
# A post's answer: the message and whether it is new (an edit's is always "new").
Answer = tuple[dict[str, Any], bool]


@dataclass
class _Shared:
    """What the batch's requests share, read once (the session's identity map keeps the
    ORM rows for every item)."""

    channels: dict[int, Channel]
    members: dict[tuple[int, int], ChannelMember]
    cards: dict[int, dict[str, Any]]
    # Posts already stored, by (channel, author, client_msg_id); posts of this batch are
    # added as they are written, so a repeat inside one batch answers the first.
    posted: dict[tuple[int, int, str], Message] = field(default_factory=dict)
    # New posts judged and waiting for ``finish`` to write them all at once, by key.
    planned: dict[tuple[int, int, str], _Planned] = field(default_factory=dict)


@dataclass
class _Planned:
    """A new post, judged; ``finish`` stores it and fills ``answer`` in place."""

    request: PostRequest
    channel: Channel
    author: dict[str, Any]
    files: list[StoredFile]
    answer: dict[str, Any] = field(default_factory=dict)


# A batch's reads, built once.
_CHANNELS = select(Channel).where(Channel.id.in_(bindparam("ids", expanding=True)))
_MEMBERS = select(ChannelMember).where(
    ChannelMember.channel_id.in_(bindparam("channels", expanding=True)),
    ChannelMember.user_id.in_(bindparam("users", expanding=True)),
)
_POSTED = select(Message).where(
    Message.channel_id.in_(bindparam("channels", expanding=True)),
    Message.author_id.in_(bindparam("authors", expanding=True)),
    Message.client_msg_id.in_(bindparam("client_msg_ids", expanding=True)),
)


def _chunks(values: Sequence[Any]) -> list[Sequence[Any]]:
    return [values[start : start + CHUNK] for start in range(0, len(values), CHUNK)]


class ChannelWriter(GroupCommit[ChannelWrite, _Shared, Answer]):
    """Posts and edits of channel messages, group-committed."""

    what = "messages"
    partitioned = True

    def __init__(self, ctx: Context) -> None:
        super().__init__(
            ctx, batch_size=ctx.settings.message_batch, queue_limit=ctx.settings.message_queue_limit
        )

    def judge(self, item: ChannelWrite) -> None:
        limit = self.ctx.settings.max_message_bytes
        require_encodable(item.body, "body")
        if utf8_len(item.body) > limit:
            raise PayloadTooLarge(f"The message is over {limit} bytes.", code="body_too_large")
        if not is_stored_id(item.channel_id):
            raise NotFound(f"Channel {item.channel_id} does not exist.", code="channel_not_found")
        if isinstance(item, EditRequest):
            if not item.body.strip():
                raise Unprocessable(
                    "An edit needs text; retract the message instead.", code="empty_message"
                )
            if not is_stored_id(item.message_id):
                raise NotFound(
                    f"No message {item.message_id} in this channel.", code="message_not_found"
                )
            return
        require_encodable(item.client_msg_id, "client_msg_id")
        if not item.body.strip() and not item.attachment_ids:
            raise Unprocessable("A message needs text or an attachment.", code="empty_message")
        if item.reply_to is not None and not is_stored_id(item.reply_to):
            raise Unprocessable(
                f"No message {item.reply_to} in this channel.", code="unknown_reply_to"
            )

    def should_retry(self, error: BaseException) -> bool:
        # Another node stored the same (author, client_msg_id) meanwhile: written again
        # alone, the post finds it and answers it. The same for an attached file's search
        # text indexed by another node meanwhile.
        return isinstance(error, IntegrityError) or super().should_retry(error)

    def isolate(self, item: ChannelWrite) -> bool:
        # A post only reads and judges in ``apply`` (``finish`` writes the batch's posts
        # in bulk), unless it indexes the text of attached files.
        return isinstance(item, EditRequest) or bool(item.attachment_ids)

    async def prepare(self, w: Write, items: Sequence[ChannelWrite]) -> _Shared:
        session = w.session
        channel_ids = sorted({item.channel_id for item in items})
        channels: dict[int, Channel] = {}
        for chunk in _chunks(channel_ids):
            for channel in (await session.execute(_CHANNELS, {"ids": chunk})).scalars():
                channels[channel.id] = channel
        # Their counters, locked in one statement: seqs are then allocated in memory.
        await w.reserve_topics([channel_topic(channel_id) for channel_id in channels])
        # Each lookup is an IN per key column (both databases search the key's index
        # with it; SQLite scans the table for a row-value IN), filtered here. A unit
        # channel's members are its unit's users: no member row is needed to judge a post.
        pairs = {
            (item.channel_id, item.actor.id)
            for item in items
            if item.channel_id in channels
            and channels[item.channel_id].kind != ChannelKind.UNIT.value
        }
        members: dict[tuple[int, int], ChannelMember] = {}
        for chunk in _chunks(sorted({channel for channel, _ in pairs})):
            for row in (
                await session.execute(
                    _MEMBERS, {"channels": chunk, "users": sorted({user for _, user in pairs})}
                )
            ).scalars():
                members[(row.channel_id, row.user_id)] = row
        shared = _Shared(
            channels, members, await sender_cards(session, (item.actor.id for item in items))
        )
        keys = {
            (item.channel_id, item.actor.id, item.client_msg_id)
            for item in items
            if isinstance(item, PostRequest)
        }
        for chunk in _chunks(sorted(keys)):
            for message in (
                await session.execute(
                    _POSTED,
                    {
                        "channels": sorted({key[0] for key in chunk}),
                        "authors": sorted({key[1] for key in chunk}),
                        "client_msg_ids": sorted({key[2] for key in chunk}),
                    },
                )
            ).scalars():
                key = (message.channel_id, message.author_id, message.client_msg_id)
                if key in keys:
                    shared.posted[key] = message
        return shared

    def _channel(self, item: ChannelWrite, shared: _Shared) -> Channel:
        channel = shared.channels.get(item.channel_id)
        if channel is None:
            raise NotFound(f"Channel {item.channel_id} does not exist.", code="channel_not_found")
        row = shared.members.get((channel.id, item.actor.id))
        if not is_channel_member(item.actor, channel, row):
            raise Forbidden("You are not a member of this channel.", code="not_a_member")
        return channel

    async def apply(self, w: Write, item: ChannelWrite, prepared: _Shared) -> Applied[Answer]:
        channel = self._channel(item, prepared)
        author = prepared.cards.get(item.actor.id) or unknown_card(item.actor.id)
        if isinstance(item, EditRequest):
            return await _edit(w, item, channel, author)
        return await _post(self.ctx, w, item, channel, author, prepared)

    async def finish(self, w: Write, prepared: _Shared) -> None:
        if prepared.planned:
            await _store_posts(w, list(prepared.planned.values()))


async def _post(
    ctx: Context,
    w: Write,
    item: PostRequest,
    channel: Channel,
    author: dict[str, Any],
    shared: _Shared,
) -> Applied[Answer]:
    session = w.session
    key = (channel.id, item.actor.id, item.client_msg_id)
    existing = shared.posted.get(key)
    if existing is not None:
        versions = await message_versions(session, existing)
        original = versions[0].body if versions else existing.body
        if (
            original != item.body
            or existing.reply_to != item.reply_to
            or sorted(existing.attachment_ids or []) != sorted(item.attachment_ids)
        ):
            raise Conflict(
                "This client_msg_id was used for another message.", code="client_msg_id_reused"
            )
        return Applied((message_json(existing, author, versions), False))
    planned = shared.planned.get(key)
    if planned is not None:
        earlier = planned.request
        if (
            earlier.body != item.body
            or earlier.reply_to != item.reply_to
            or sorted(earlier.attachment_ids) != sorted(item.attachment_ids)
        ):
            raise Conflict(
                "This client_msg_id was used for another message.", code="client_msg_id_reused"
            )
        return Applied((planned.answer, False))
    if item.reply_to is not None:
        target = await session.get(Message, item.reply_to)
        if target is None or target.channel_id != channel.id:
            raise Unprocessable(
                f"No message {item.reply_to} in this channel.", code="unknown_reply_to"
            )
    files = await require_attachable(ctx, session, item.actor, list(item.attachment_ids))
    if files:
        await require_readers_cleared(
            session, files, await channel_clearance(session, channel), "channel"
        )
        await index_attachments(session, files, w.now)
    planned = shared.planned[key] = _Planned(item, channel, author, files)
    return Applied((planned.answer, True))


# The batch's new messages in one statement, built once. Their ids come back with their
# (channel, seq), unique in the batch: asking for them in the order of the rows given
# would make SQLite run one INSERT per row.
_MESSAGES = Message.__table__
_INSERT_MESSAGES = insert(_MESSAGES).returning(
    _MESSAGES.c.id, _MESSAGES.c.channel_id, _MESSAGES.c.seq
)


async def _store_posts(w: Write, posts: Sequence[_Planned]) -> None:
    """Write the batch's new posts: messages, their events (seqs from the reserved
    counters), read positions and search text, a few statements for all of them."""
    session = w.session
    # Each message is stored with the seq its event takes below, so no second statement
    # writes the seqs once the events are emitted.
    taken: dict[int, int] = {}
    messages = []
    for p in posts:
        channel_id = p.channel.id
        seq = taken[channel_id] = (
            taken.get(channel_id, w.next_seq(channel_topic(channel_id)) - 1) + 1
        )
        messages.append(
            Message(
                channel_id=channel_id,
                seq=seq,
                author_id=p.request.actor.id,
                client_msg_id=p.request.client_msg_id,
                body=p.request.body,
                reply_to=p.request.reply_to,
                attachment_ids=[f.id for f in p.files],
                state=MessageState.POSTED.value,
                version=1,
                created_at=w.now,
                edited_at=None,
                retracted_at=None,
            )
        )
    ids = {
        (int(channel_id), int(seq)): int(message_id)
        for message_id, channel_id, seq in (
            await session.execute(_INSERT_MESSAGES, [_columns(m) for m in messages])
        ).all()
    }
    read_up_to: dict[tuple[int, int], tuple[int, bool]] = {}
    for post, message in zip(posts, messages, strict=True):
        message.id = ids[(message.channel_id, message.seq)]
        draft = message_json(message, post.author)
        del draft["seq"]  # the message's seq is the seq of this event
        event = await emit_message_posted(w, post.channel.id, message=draft)
        if event.seq != message.seq:
            # Cannot happen while nothing else emits on these topics in between; were it
            # to, the batch fails and each post is written alone.
            raise RuntimeError(f"message stored with seq {message.seq}, its event took {event.seq}")
        post.answer.update(message_json(message, post.author))
        read_up_to[(post.channel.id, message.author_id)] = (
            event.seq,
            post.channel.kind != ChannelKind.UNIT.value,
        )
    attached = [
        {"message_id": m.id, "file_id": f.id}
        for p, m in zip(posts, messages, strict=True)
        for f in p.files
    ]
    if attached:
        await session.execute(insert(MessageAttachment), attached)
    await move_read_positions(session, read_up_to, w.now)
    await index_new_documents(
        session,
        SearchKind.MESSAGE,
        [
            (m.id, p.request.folded or fold(m.body))
            for p, m in zip(posts, messages, strict=True)
            if m.body.strip()
        ],
        w.now,
        folded=True,
    )


_MESSAGE_COLUMNS = tuple(column.key for column in _MESSAGES.columns if column.key != "id")


def _columns(message: Message) -> dict[str, Any]:
    return {key: getattr(message, key) for key in _MESSAGE_COLUMNS}


async def _edit(
    w: Write, item: EditRequest, channel: Channel, author: dict[str, Any]
) -> Applied[Answer]:
    session = w.session
    # The batch's earlier events are stored by now (the mechanism stores them before an
    # isolated item): ``replace_earlier_events`` finds an earlier edit of this batch.
    message = await session.get(Message, item.message_id)
    if message is None or message.channel_id != channel.id:
        raise NotFound(f"No message {item.message_id} in this channel.", code="message_not_found")
    if message.author_id != item.actor.id:
        raise Forbidden("Only the author may change a message.", code="not_author")
    MessageState(message.state).check_transition(MessageState.EDITED)
    session.add(
        MessageVersion(
            message_id=message.id, version=message.version, body=message.body, replaced_at=w.now
        )
    )
    message.body = item.body
    message.version += 1
    message.state = MessageState.EDITED.value
    message.edited_at = w.now
    await session.flush()
    # The event carries the new text only; earlier texts stay in REST's history.
    event_view = message_json(message, author)
    await replace_earlier_events(session, channel.id, message, event_view)
    await emit_message_edited(w, channel.id, message=event_view)
    result = message_json(message, author, await message_versions(session, message))
    await index_document(session, SearchKind.MESSAGE, message.id, item.body, w.now)
    audit = AuditEntry(
        item.actor.id,
        "message.edit",
        f"channel:{channel.id}",
        {"message_id": message.id, "version": message.version},
    )
    return Applied((result, True), audit=[audit])


def channel_writer(ctx: Context) -> ChannelWriter:
    runtime = messaging_runtime(ctx)
    assert runtime is not None, "the messaging feature's start-up installs its runtime"
    return runtime.channels


async def post_message(
    ctx: Context,
    actor: Principal,
    channel_id: int,
    *,
    body: str,
    client_msg_id: str,
    reply_to: int | None,
    attachment_ids: Sequence[int],
) -> Answer:
    """Post a message once per ``client_msg_id``; returns it and whether it is new."""
    return await channel_writer(ctx).submit(
        PostRequest(
            actor,
            channel_id,
            body,
            client_msg_id,
            reply_to,
            tuple(attachment_ids),
            folded=fold(body) if body.strip() else "",
        )
    )


async def edit_message(
    ctx: Context, actor: Principal, channel_id: int, message_id: int, *, body: str
) -> dict[str, Any]:
    """Replace a message's text, keeping the earlier text as a version."""
    message, _ = await channel_writer(ctx).submit(EditRequest(actor, channel_id, message_id, body))
    return message


async def run_channel_writer(ctx: Context) -> None:
    """``Feature.background`` entry: this node's writer of channel messages."""
    await channel_writer(ctx).run()
