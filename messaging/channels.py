"""Channels and direct messages.

Kinds: every unit has a *unit* channel whose members are the unit's users (membership
follows the user's unit); *group* channels list their members; a *direct* channel is the
one conversation of a pair of users. Messages go out as events on ``channel:{id}``; a
message's ``seq`` is the seq of its ``message.posted`` event, so history and live events
share one order.

Posting is idempotent on ``(author, client_msg_id)``: the same message again answers the
stored one. Editing keeps every earlier text (``message_versions``); retracting keeps a
tombstone. Both are audited. Only the current text stays in the event log: an edit's event
carries the new text and the message's earlier events are rewritten to it (seqs kept); a
retraction rewrites them to the tombstone. Earlier texts are in REST's history.

Each member has a read position; unread counts are the others' messages after it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Integer,
    Row,
    Select,
    and_,
    bindparam,
    func,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from messaging.directives import iso
from messaging.events import (
    emit_channel_added,
    emit_channel_created,
    emit_message_retracted,
)
from messaging.models import (
    Channel,
    ChannelKind,
    ChannelMember,
    Message,
    MessageState,
    MessageVersion,
    SearchKind,
)
from messaging.search import remove_document
from messaging.senders import card_of, sender_card, unknown_card
from messaging.visibility import channel_member_sql, is_member
from server.auth.principal import Principal
from server.context import Context, Write
from server.db import SENT_LATER, UTCDateTime
from server.errors import Forbidden, NotFound, Unprocessable
from server.org.models import Confidentiality, Unit, User
from server.realtime.log import rewrite_events
from server.realtime.models import EventRecord

log = logging.getLogger("dienhong.messaging.channels")

# Messages per page of history.
MAX_PAGE = 200


def channel_json(channel: Channel) -> dict[str, Any]:
    return {
        "id": channel.id,
        "kind": channel.kind,
        "name": channel.name,
        "unit_id": channel.unit_id,
        "created_at": iso(channel.created_at),
    }


def message_json(
    message: Message | Row[Any],
    author: dict[str, Any],
    versions: Sequence[MessageVersion] = (),
) -> dict[str, Any]:
    """A message as the API and its events show it; ``author`` is the author's card now
    (messaging.senders: a member from another unit is named, not only numbered)."""
    retracted = message.state == MessageState.RETRACTED.value
    return {
        "id": message.id,
        "channel_id": message.channel_id,
        "seq": message.seq,
        "author_id": message.author_id,
        "author_name": author["display_name"],
        "sender": author,
        "client_msg_id": message.client_msg_id,
        "body": None if retracted else message.body,
        "reply_to": message.reply_to,
        "attachment_ids": [] if retracted else list(message.attachment_ids or []),
        "state": message.state,
        "version": message.version,
        "created_at": iso(message.created_at),
        "edited_at": iso(message.edited_at),
        "retracted_at": iso(message.retracted_at),
        # Earlier texts of an edited message; a tombstone shows none of its text.
        "versions": []
        if retracted
        else [
            {"version": v.version, "body": v.body, "replaced_at": iso(v.replaced_at)}
            for v in versions
        ],
    }


# --- unit channels -----------------------------------------------------------------------
async def _create_unit_channel(w: Write, unit: Unit) -> Channel:
    channel = Channel(
        kind=ChannelKind.UNIT.value, name=unit.name, unit_id=unit.id, created_at=w.now
    )
    w.session.add(channel)
    await w.session.flush()
    await emit_channel_created(w, channel.id, channel=channel_json(channel))
    return channel


async def ensure_unit_channels(ctx: Context) -> int:
    """Create the channel of every unit that has none; returns how many were made."""
    async with ctx.read() as session:
        missing = (
            (
                await session.execute(
                    select(Unit.id).where(
                        ~Unit.id.in_(select(Channel.unit_id).where(Channel.unit_id.is_not(None)))
                    )
                )
            )
            .scalars()
            .all()
        )
    if not missing:
        return 0
    made = 0
    try:
        async with ctx.write() as w:
            for unit_id in missing:
                exists = (
                    await w.session.execute(select(Channel.id).where(Channel.unit_id == unit_id))
                ).first()
                unit = await w.session.get(Unit, unit_id)
                if exists is not None or unit is None:
                    continue
                await _create_unit_channel(w, unit)
                made += 1
    except IntegrityError:
        # Another node (or request) created some of them at the same moment; whatever is
        # still missing is created on the next call.
        log.info("unit channels were being created elsewhere at the same time")
        return 0
    return made


# --- membership --------------------------------------------------------------------------
async def may_follow_channel(ctx: Context, principal: Principal, channel_id: int) -> bool:
    """Topic authorizer for ``channel:{id}``: members only."""
    async with ctx.read() as session:
        channel = await session.get(Channel, channel_id)
        return channel is not None and await is_member(session, principal, channel)


async def require_member(session: AsyncSession, principal: Principal, channel_id: int) -> Channel:
    channel = await session.get(Channel, channel_id)
    if channel is None:
        raise NotFound(f"Channel {channel_id} does not exist.", code="channel_not_found")
    if not await is_member(session, principal, channel):
        raise Forbidden("You are not a member of this channel.", code="not_a_member")
    return channel


async def member_ids(session: AsyncSession, channel: Channel) -> list[int]:
    if channel.kind == ChannelKind.UNIT.value:
        stmt = select(User.id).where(User.unit_id == channel.unit_id, User.active.is_(True))
    else:
        stmt = select(ChannelMember.user_id).where(
            ChannelMember.channel_id == channel.id, ChannelMember.member.is_(True)
        )
    return sorted((await session.execute(stmt)).scalars().all())


# --- channels ------------------------------------------------------------------------------
async def create_channel(
    ctx: Context, actor: Principal, *, name: str | None, kind: ChannelKind, members: Sequence[int]
) -> tuple[dict[str, Any], bool]:
    """Create a group or direct channel; a pair's direct channel is made once.

    Returns the channel and whether it was created now.
    """
    wanted = sorted(set(members) | {actor.id})
    if kind is ChannelKind.DIRECT:
        others = [m for m in wanted if m != actor.id]
        if len(others) != 1:
            raise Unprocessable(
                "A direct channel has exactly one other member.", code="invalid_members"
            )
    elif kind is ChannelKind.GROUP:
        if not name:
            raise Unprocessable("A group channel needs a name.", code="name_required")
    else:
        raise Unprocessable("Unit channels are made with their unit.", code="invalid_kind")
    if len(wanted) > ctx.settings.max_channel_members:
        raise Unprocessable(
            f"A channel has at most {ctx.settings.max_channel_members} members.",
            code="too_many_members",
        )
    async with ctx.write() as w:
        session = w.session
        found = set(
            (
                await session.execute(
                    select(User.id).where(User.id.in_(wanted), User.active.is_(True))
                )
            )
            .scalars()
            .all()
        )
        unknown = sorted(set(wanted) - found)
        if unknown:
            raise Unprocessable(
                f"Unknown users: {unknown}.", code="unknown_users", details={"user_ids": unknown}
            )
        direct_key = None
        if kind is ChannelKind.DIRECT:
            direct_key = f"{wanted[0]}:{wanted[-1]}"
            existing = (
                await session.execute(select(Channel).where(Channel.direct_key == direct_key))
            ).scalar_one_or_none()
            if existing is not None:
                return channel_json(existing) | {"member_ids": wanted}, False
            names = (
                (
                    await session.execute(
                        select(User.display_name).where(User.id.in_(wanted)).order_by(User.id)
                    )
                )
                .scalars()
                .all()
            )
            name = " · ".join(names)
        channel = Channel(
            kind=kind.value,
            name=name or "",
            direct_key=direct_key,
            created_by=actor.id,
            created_at=w.now,
        )
        session.add(channel)
        await session.flush()
        for user_id in wanted:
            session.add(
                ChannelMember(
                    channel_id=channel.id, user_id=user_id, member=True, read_seq=0, joined_at=w.now
                )
            )
        data = {"channel": channel_json(channel) | {"member_ids": wanted}}
        await emit_channel_created(w, channel.id, **data)
        for user_id in wanted:
            await emit_channel_added(w, user_id, **data)
        await w.audit(
            actor.id,
            "channel.create",
            f"channel:{channel.id}",
            {"kind": kind.value, "member_ids": wanted},
        )
        return data["channel"], True


async def list_channels(ctx: Context, actor: Principal) -> list[dict[str, Any]]:
    """The actor's channels with read position, last seq and unread count."""
    async with ctx.read() as session:
        has_unit_channel = (
            await session.execute(select(Channel.id).where(Channel.unit_id == actor.unit_id))
        ).first()
    if has_unit_channel is None:
        await ensure_unit_channels(ctx)
    async with ctx.read() as session:
        channels = (
            (
                await session.execute(
                    select(Channel).where(channel_member_sql(actor)).order_by(Channel.id)
                )
            )
            .scalars()
            .all()
        )
        ids = [c.id for c in channels]
        reads: dict[int, int] = {}
        last: dict[int, int] = {}
        if ids:
            for channel_id, read_seq in (
                await session.execute(
                    select(ChannelMember.channel_id, ChannelMember.read_seq).where(
                        ChannelMember.user_id == actor.id, ChannelMember.channel_id.in_(ids)
                    )
                )
            ).all():
                reads[channel_id] = int(read_seq)
            for channel_id, seq in (
                await session.execute(
                    select(Message.channel_id, func.max(Message.seq))
                    .where(Message.channel_id.in_(ids))
                    .group_by(Message.channel_id)
                )
            ).all():
                last[channel_id] = int(seq or 0)
        result = []
        for channel in channels:
            read_seq = int(reads.get(channel.id, 0))
            result.append(
                channel_json(channel)
                | {
                    "last_seq": int(last.get(channel.id) or 0),
                    "read_seq": read_seq,
                    "unread": await _unread(session, actor, channel.id, read_seq),
                }
            )
        return result


async def _unread(session: AsyncSession, actor: Principal, channel_id: int, read_seq: int) -> int:
    return int(
        (
            await session.execute(
                select(func.count())
                .select_from(Message)
                .where(
                    Message.channel_id == channel_id,
                    Message.seq > read_seq,
                    Message.author_id != actor.id,
                    Message.state != MessageState.RETRACTED.value,
                )
            )
        ).scalar_one()
    )


async def get_channel(ctx: Context, actor: Principal, channel_id: int) -> dict[str, Any]:
    async with ctx.read() as session:
        channel = await require_member(session, actor, channel_id)
        return channel_json(channel) | {"member_ids": await member_ids(session, channel)}


# --- messages --------------------------------------------------------------------------------
# The upsert of ``move_read_positions``, run with one row of parameters per position.
# Written out: SQLAlchemy compiles a dialect's ``insert().on_conflict_do_update()`` again
# on every execution (it has no cache key), which cost more than the statement.
_READ_POSITIONS = (
    text(
        "INSERT INTO channel_members (channel_id, user_id, member, read_seq, joined_at) "
        "VALUES (:channel_id, :user_id, :member, :read_seq, :joined_at) "
        "ON CONFLICT (channel_id, user_id) DO UPDATE SET read_seq = CASE "
        "WHEN excluded.read_seq > channel_members.read_seq THEN excluded.read_seq "
        "ELSE channel_members.read_seq END"
    )
    .bindparams(
        bindparam("channel_id", type_=Integer()),
        bindparam("user_id", type_=Integer()),
        bindparam("member", type_=Boolean()),
        bindparam("read_seq", type_=BigInteger()),
        bindparam("joined_at", type_=UTCDateTime()),
    )
    .execution_options(**SENT_LATER)
)


async def move_read_positions(
    session: AsyncSession, positions: Mapping[tuple[int, int], tuple[int, bool]], now: datetime
) -> None:
    """``move_read_position`` for many (channel, user) pairs in one statement; each
    position is ``(seq, member)``, ``member`` used only for a row made now."""
    if not positions:
        return
    await session.execute(
        _READ_POSITIONS,
        [
            {
                "channel_id": channel_id,
                "user_id": user_id,
                "member": member,
                "read_seq": seq,
                "joined_at": now,
            }
            for (channel_id, user_id), (seq, member) in sorted(positions.items())
        ],
    )


def channel_topic(channel_id: int) -> str:
    return f"channel:{channel_id}"


async def move_read_position(
    session: AsyncSession, channel_id: int, user_id: int, seq: int, now: Any, member: bool
) -> ChannelMember:
    row = await session.get(ChannelMember, (channel_id, user_id))
    if row is None:
        row = ChannelMember(
            channel_id=channel_id, user_id=user_id, member=member, read_seq=seq, joined_at=now
        )
        session.add(row)
    elif seq > row.read_seq:
        row.read_seq = seq
    return row


async def message_versions(session: AsyncSession, message: Message) -> Sequence[MessageVersion]:
    if message.version <= 1:
        return ()
    return (
        (
            await session.execute(
                select(MessageVersion)
                .where(MessageVersion.message_id == message.id)
                .order_by(MessageVersion.version)
            )
        )
        .scalars()
        .all()
    )


async def _own_message(
    session: AsyncSession, actor: Principal, channel_id: int, message_id: int
) -> tuple[Channel, Message]:
    channel = await require_member(session, actor, channel_id)
    message = await session.get(Message, message_id)
    if message is None or message.channel_id != channel.id:
        raise NotFound(f"No message {message_id} in this channel.", code="message_not_found")
    if message.author_id != actor.id:
        raise Forbidden("Only the author may change a message.", code="not_author")
    return channel, message


async def replace_earlier_events(
    session: AsyncSession, channel_id: int, message: Message, view: dict[str, Any]
) -> None:
    """Make the message's earlier events (posted, edited) carry ``view`` instead of the
    text they were written with, keeping their seqs."""
    topic = channel_topic(channel_id)
    posted = {key: value for key, value in view.items() if key != "seq"}
    await rewrite_events(session, topic, [message.seq], {"message": posted})
    edited = (
        (
            await session.execute(
                select(EventRecord.seq).where(
                    EventRecord.topic == topic,
                    EventRecord.seq > message.seq,
                    EventRecord.type == "message.edited",
                    EventRecord.data["message"]["id"].as_integer() == message.id,
                )
            )
        )
        .scalars()
        .all()
    )
    await rewrite_events(session, topic, edited, {"message": view})


async def retract_message(
    ctx: Context, actor: Principal, channel_id: int, message_id: int
) -> dict[str, Any]:
    """Retract a message: a tombstone stays in the history, its text in the versions."""
    async with ctx.write() as w:
        session = w.session
        channel, message = await _own_message(session, actor, channel_id, message_id)
        MessageState(message.state).check_transition(MessageState.RETRACTED)
        session.add(
            MessageVersion(
                message_id=message.id, version=message.version, body=message.body, replaced_at=w.now
            )
        )
        message.body = ""
        message.version += 1
        message.state = MessageState.RETRACTED.value
        message.retracted_at = w.now
        await session.flush()
        result = message_json(message, await sender_card(session, actor.id))
        # A replay shows the tombstone: the text leaves the log.
        await replace_earlier_events(session, channel.id, message, result)
        await emit_message_retracted(w, channel.id, message=result)
        await remove_document(session, SearchKind.MESSAGE, message.id)
        await w.audit(
            actor.id,
            "message.retract",
            f"channel:{channel.id}",
            {"message_id": message.id, "version": message.version},
        )
        return result


# A page of history in one statement: the channel, whether the reader is a member (the
# rule of ``is_member`` as SQL, for a reader whose id and unit are parameters), the page
# of messages and their authors' cards. No row: no such channel; rows whose message is
# NULL: a channel with nothing in that range. Built and compiled once.
_READER = Principal(
    id=cast(int, bindparam("reader_id", type_=Integer)),
    username="",
    display_name="",
    unit_id=cast(int, bindparam("reader_unit_id", type_=Integer)),
    roles=frozenset(),
    clearance=Confidentiality.NONE,
)


def _page_statement(*, newest_first: bool) -> Select[Any]:
    boundary = bindparam("boundary", type_=BigInteger)
    within = Message.seq < boundary if newest_first else Message.seq > boundary
    return (
        select(
            channel_member_sql(_READER).label("member"),
            *Message.__table__.c,
            User.display_name.label("author_display_name"),
            User.roles.label("author_roles"),
            User.unit_id.label("author_unit_id"),
            Unit.name.label("author_unit_name"),
        )
        .select_from(Channel)
        .outerjoin(Message, and_(Message.channel_id == Channel.id, within))
        .outerjoin(User, User.id == Message.author_id)
        .outerjoin(Unit, Unit.id == User.unit_id)
        .where(Channel.id == bindparam("channel_id", type_=Integer))
        .order_by(Message.seq.desc() if newest_first else Message.seq)
        .limit(bindparam("limit", type_=Integer))
    )


_PAGE_AFTER = _page_statement(newest_first=False)
_PAGE_BEFORE = _page_statement(newest_first=True)
_VERSIONS = (
    select(MessageVersion)
    .where(MessageVersion.message_id.in_(bindparam("ids", expanding=True)))
    .order_by(MessageVersion.version)
)


async def history(
    ctx: Context,
    actor: Principal,
    channel_id: int,
    *,
    after_seq: int | None,
    before_seq: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Messages in seq order: after ``after_seq``, or the newest before ``before_seq``.

    A reader asking for news every few seconds costs one statement and no transaction: one
    trip to the database, which under a load of writes is one wait for the event loop
    instead of five (the channel, the membership, the messages, the cards, the rollback).
    """
    newest_first = after_seq is None and before_seq is not None
    found = await ctx.db.read_rows(
        _PAGE_BEFORE if newest_first else _PAGE_AFTER,
        {
            "reader_id": actor.id,
            "reader_unit_id": actor.unit_id,
            "channel_id": channel_id,
            "boundary": before_seq if newest_first else (after_seq or 0),
            "limit": max(1, min(limit, MAX_PAGE)),
        },
    )
    if not found:
        raise NotFound(f"Channel {channel_id} does not exist.", code="channel_not_found")
    if not found[0].member:
        raise Forbidden("You are not a member of this channel.", code="not_a_member")
    page = [row for row in found if row.id is not None]
    if newest_first:
        page.reverse()
    versions: dict[int, list[MessageVersion]] = {}
    edited = [row.id for row in page if row.version > 1]
    if edited:
        async with ctx.read() as session:
            for version in (await session.execute(_VERSIONS, {"ids": edited})).scalars():
                versions.setdefault(version.message_id, []).append(version)
    return [
        message_json(
            row,
            card_of(
                row.author_id,
                row.author_display_name,
                row.author_roles,
                row.author_unit_id,
                row.author_unit_name,
            )
            if row.author_unit_id is not None
            else unknown_card(row.author_id),
            # Read after the page: an edit made meanwhile is not the page's.
            [v for v in versions.get(row.id, ()) if v.version < row.version],
        )
        for row in page
    ]


async def mark_read(ctx: Context, actor: Principal, channel_id: int, seq: int) -> dict[str, Any]:
    """Move the actor's read position forward (never back) to ``seq``."""
    async with ctx.write() as w:
        session = w.session
        channel = await require_member(session, actor, channel_id)
        last = int(
            (
                await session.execute(
                    select(func.coalesce(func.max(Message.seq), 0)).where(
                        Message.channel_id == channel.id
                    )
                )
            ).scalar_one()
        )
        row = await move_read_position(
            session,
            channel.id,
            actor.id,
            min(seq, last),
            w.now,
            member=channel.kind != ChannelKind.UNIT.value,
        )
        await session.flush()
        unread = await _unread(session, actor, channel.id, row.read_seq)
        return {"channel_id": channel.id, "read_seq": row.read_seq, "unread": unread}
