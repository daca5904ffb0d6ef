"""Tables of the messaging feature: directives and their receipts, replies, channels,
messages with their earlier versions, and the search documents.

Receipts are one row per recipient (``DirectiveRecipient``): the three facts of the design
(delivered, read, acknowledged) each stored once with its time, the seq of the
``directive.issued`` event on the recipient's ``user:`` topic (so a ``received``
confirmation maps to the directives it covers), and the chasing state
(``next_reminder_at``, ``reminders_sent``) that the scheduler claims in a write
transaction, so reminders survive restarts and are sent once with several nodes.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, UTCDateTime
from server.errors import Conflict


class Urgency(enum.StrEnum):
    """Độ khẩn, as printed on Vietnamese official documents."""

    NORMAL = "normal"
    URGENT = "urgent"  # Khẩn
    VERY_URGENT = "very_urgent"  # Thượng khẩn
    EXPRESS = "express"  # Hỏa tốc


class ReceiptState(enum.StrEnum):
    """Where a recipient stands; each step is a fact recorded once, never undone."""

    PENDING = "pending"
    DELIVERED = "delivered"
    READ = "read"
    ACKNOWLEDGED = "acknowledged"


class ChannelKind(enum.StrEnum):
    UNIT = "unit"
    GROUP = "group"
    DIRECT = "direct"


class MessageState(enum.StrEnum):
    """A message is posted, may be edited (earlier versions kept), and may be retracted
    (a tombstone stays). A retracted message can neither be edited nor retracted again."""

    POSTED = "posted"
    EDITED = "edited"
    RETRACTED = "retracted"

    def check_transition(self, target: MessageState) -> None:
        if target not in _MESSAGE_TRANSITIONS[self]:
            raise Conflict(
                f"A {self.value} message cannot be {target.value}.", code=f"message_{self.value}"
            )


_MESSAGE_TRANSITIONS: dict[MessageState, frozenset[MessageState]] = {
    MessageState.POSTED: frozenset({MessageState.EDITED, MessageState.RETRACTED}),
    MessageState.EDITED: frozenset({MessageState.EDITED, MessageState.RETRACTED}),
    MessageState.RETRACTED: frozenset(),
}


class SearchKind(enum.StrEnum):
    DIRECTIVE = "directive"
    REPLY = "reply"
    MESSAGE = "message"
    # The text of a file attached to a directive, a reply or a message (one per file).
    ATTACHMENT = "attachment"


class Directive(Base):
    __tablename__ = "directives"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sender_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    sender_unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    urgency: Mapped[str] = mapped_column(String(16))
    confidentiality: Mapped[str] = mapped_column(String(16))
    ack_required: Mapped[bool] = mapped_column(Boolean, default=True)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # {"unit_ids": [...], "include_descendants": bool} as the sender asked.
    targets: Mapped[dict[str, Any]] = mapped_column(JSON)
    recipient_count: Mapped[int] = mapped_column(Integer, default=0)
    # Users of the targeted units not cleared for the level: [{user_id, unit_id}].
    left_out: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # When the sender was told the directive is overdue (claimed once by one node).
    overdue_notified_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), default=None, index=True
    )


class DirectiveAttachment(Base):
    __tablename__ = "directive_attachments"

    directive_id: Mapped[int] = mapped_column(
        ForeignKey("directives.id", ondelete="CASCADE"), primary_key=True
    )
    file_id: Mapped[int] = mapped_column(
        ForeignKey("files.id", ondelete="RESTRICT"), primary_key=True, index=True
    )
    position: Mapped[int] = mapped_column(Integer, default=0)


class DirectiveRecipient(Base):
    __tablename__ = "directive_recipients"
    __table_args__ = (
        UniqueConstraint("directive_id", "user_id", name="uq_directive_recipients_directive_user"),
        Index("ix_directive_recipients_user_seq", "user_id", "event_seq"),
        Index("ix_directive_recipients_next_reminder", "next_reminder_at"),
        Index("ix_directive_recipients_directive_unit", "directive_id", "unit_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    directive_id: Mapped[int] = mapped_column(ForeignKey("directives.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # The unit the user belonged to at issue time: the roll-up counts by it.
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    # Seq of this directive's ``directive.issued`` event on ``user:{user_id}``.
    event_seq: Mapped[int] = mapped_column(BigInteger)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    ack_note: Mapped[str | None] = mapped_column(Text, default=None)
    # Chasing: null once acknowledged (or when the directive needs no acknowledgement).
    next_reminder_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0)
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    @property
    def state(self) -> ReceiptState:
        if self.acknowledged_at is not None:
            return ReceiptState.ACKNOWLEDGED
        if self.read_at is not None:
            return ReceiptState.READ
        if self.delivered_at is not None:
            return ReceiptState.DELIVERED
        return ReceiptState.PENDING


class DirectiveReply(Base):
    """A unit reporting back or asking for guidance; one thread per (directive, unit)."""

    __tablename__ = "directive_replies"
    __table_args__ = (Index("ix_directive_replies_directive_unit", "directive_id", "unit_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    directive_id: Mapped[int] = mapped_column(ForeignKey("directives.id", ondelete="CASCADE"))
    # The recipient unit whose thread this is (also when the sender side answers in it).
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(Text)
    attachment_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ReplyAttachment(Base):
    __tablename__ = "reply_attachments"

    reply_id: Mapped[int] = mapped_column(
        ForeignKey("directive_replies.id", ondelete="CASCADE"), primary_key=True
    )
    file_id: Mapped[int] = mapped_column(
        ForeignKey("files.id", ondelete="RESTRICT"), primary_key=True, index=True
    )


class Channel(Base):
    __tablename__ = "channels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    # Set for unit channels: every member of the unit is a member of its channel.
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), unique=True, default=None)
    # "low:high" user ids for direct channels, so a pair has one conversation.
    direct_key: Mapped[str | None] = mapped_column(String(40), unique=True, default=None)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ChannelMember(Base):
    """Membership of group and direct channels; for every kind, the read position."""

    __tablename__ = "channel_members"

    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True, index=True)
    # False for a read-position row of a unit channel (membership comes from the unit).
    member: Mapped[bool] = mapped_column(Boolean, default=True)
    # Highest message seq this member has read.
    read_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint(
            "channel_id", "author_id", "client_msg_id", name="uq_messages_channel_author_client"
        ),
        Index("ix_messages_channel_seq", "channel_id", "seq"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    # Seq of the ``message.posted`` event on ``channel:{id}``: the history's order.
    seq: Mapped[int] = mapped_column(BigInteger)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    client_msg_id: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    reply_to: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), default=None)
    attachment_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    state: Mapped[str] = mapped_column(String(16), default=MessageState.POSTED.value)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    retracted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class MessageVersion(Base):
    """An earlier text of an edited or retracted message, kept for the record."""

    __tablename__ = "message_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    # When this text was replaced.
    replaced_at: Mapped[datetime] = mapped_column(UTCDateTime())


class MessageAttachment(Base):
    __tablename__ = "message_attachments"

    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    file_id: Mapped[int] = mapped_column(
        ForeignKey("files.id", ondelete="RESTRICT"), primary_key=True, index=True
    )


class SearchDocument(Base):
    """A folded (unaccented, lower-case) copy of searchable text.

    SQLite indexes it with an FTS5 table kept in step by triggers; PostgreSQL with a GIN
    index on ``to_tsvector('simple', folded)``. Both are created by the migration.
    """

    __tablename__ = "search_documents"
    __table_args__ = (UniqueConstraint("kind", "object_id", name="uq_search_documents_kind_obj"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    object_id: Mapped[int] = mapped_column(Integer)
    folded: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
