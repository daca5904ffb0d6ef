"""messaging: directives and receipts, replies, channels and messages, search

Revision ID: 0003_messaging
Revises: 0002_files
Create Date: 2026-11-23

Search: SQLite gets an FTS5 table over ``search_documents.folded`` kept in step by
triggers; PostgreSQL a GIN index on ``to_tsvector('simple', folded)``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.db

revision = "0003_messaging"
down_revision = "0002_files"
branch_labels = None
depends_on = None

SQLITE_SEARCH = [
    "CREATE VIRTUAL TABLE search_fts USING fts5(folded, content='search_documents', "
    "content_rowid='id')",
    "CREATE TRIGGER search_documents_ai AFTER INSERT ON search_documents BEGIN "
    "INSERT INTO search_fts(rowid, folded) VALUES (new.id, new.folded); END",
    "CREATE TRIGGER search_documents_ad AFTER DELETE ON search_documents BEGIN "
    "INSERT INTO search_fts(search_fts, rowid, folded) VALUES ('delete', old.id, old.folded); END",
    "CREATE TRIGGER search_documents_au AFTER UPDATE ON search_documents BEGIN "
    "INSERT INTO search_fts(search_fts, rowid, folded) VALUES ('delete', old.id, old.folded); "
    "INSERT INTO search_fts(rowid, folded) VALUES (new.id, new.folded); END",
]
POSTGRESQL_SEARCH = [
    "CREATE INDEX ix_search_documents_tsv ON search_documents "
    "USING gin (to_tsvector('simple', folded))",
]


def upgrade() -> None:
    op.create_table(
        "search_documents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("object_id", sa.Integer(), nullable=False),
        sa.Column("folded", sa.Text(), nullable=False),
        sa.Column("at", server.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search_documents")),
        sa.UniqueConstraint("kind", "object_id", name="uq_search_documents_kind_obj"),
    )
    op.create_table(
        "channels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=True),
        sa.Column("direct_key", sa.String(length=40), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", server.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_channels_created_by_users")
        ),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name=op.f("fk_channels_unit_id_units")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channels")),
        sa.UniqueConstraint("direct_key", name=op.f("uq_channels_direct_key")),
        sa.UniqueConstraint("unit_id", name=op.f("uq_channels_unit_id")),
    )
    op.create_table(
        "directives",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sender_id", sa.Integer(), nullable=False),
        sa.Column("sender_unit_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("urgency", sa.String(length=16), nullable=False),
        sa.Column("confidentiality", sa.String(length=16), nullable=False),
        sa.Column("ack_required", sa.Boolean(), nullable=False),
        sa.Column("due_at", server.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("issued_at", server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column("recipient_count", sa.Integer(), nullable=False),
        sa.Column("left_out", sa.JSON(), nullable=False),
        sa.Column("overdue_notified_at", server.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["sender_id"], ["users.id"], name=op.f("fk_directives_sender_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["sender_unit_id"], ["units.id"], name=op.f("fk_directives_sender_unit_id_units")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_directives")),
    )
    with op.batch_alter_table("directives", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_directives_overdue_notified_at"), ["overdue_notified_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_directives_sender_id"), ["sender_id"], unique=False)

    op.create_table(
        "channel_members",
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("member", sa.Boolean(), nullable=False),
        sa.Column("read_seq", sa.BigInteger(), nullable=False),
        sa.Column("joined_at", server.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name=op.f("fk_channel_members_channel_id_channels"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_channel_members_user_id_users")
        ),
        sa.PrimaryKeyConstraint("channel_id", "user_id", name=op.f("pk_channel_members")),
    )
    with op.batch_alter_table("channel_members", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_channel_members_user_id"), ["user_id"], unique=False)

    op.create_table(
        "directive_attachments",
        sa.Column("directive_id", sa.Integer(), nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["directive_id"],
            ["directives.id"],
            name=op.f("fk_directive_attachments_directive_id_directives"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["files.id"],
            name=op.f("fk_directive_attachments_file_id_files"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("directive_id", "file_id", name=op.f("pk_directive_attachments")),
    )
    with op.batch_alter_table("directive_attachments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_directive_attachments_file_id"), ["file_id"], unique=False
        )

    op.create_table(
        "directive_recipients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("directive_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("event_seq", sa.BigInteger(), nullable=False),
        sa.Column("delivered_at", server.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("read_at", server.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_at", server.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ack_note", sa.Text(), nullable=True),
        sa.Column("next_reminder_at", server.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reminders_sent", sa.Integer(), nullable=False),
        sa.Column("escalated_at", server.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["directive_id"],
            ["directives.id"],
            name=op.f("fk_directive_recipients_directive_id_directives"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["units.id"], name=op.f("fk_directive_recipients_unit_id_units")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_directive_recipients_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_directive_recipients")),
        sa.UniqueConstraint(
            "directive_id", "user_id", name="uq_directive_recipients_directive_user"
        ),
    )
    with op.batch_alter_table("directive_recipients", schema=None) as batch_op:
        batch_op.create_index(
            "ix_directive_recipients_directive_unit", ["directive_id", "unit_id"], unique=False
        )
        batch_op.create_index(
            "ix_directive_recipients_next_reminder", ["next_reminder_at"], unique=False
        )
        batch_op.create_index(
            "ix_directive_recipients_user_seq", ["user_id", "event_seq"], unique=False
        )

    op.create_table(
        "directive_replies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("directive_id", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("attachment_ids", sa.JSON(), nullable=False),
        sa.Column("created_at", server.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["author_id"], ["users.id"], name=op.f("fk_directive_replies_author_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["directive_id"],
            ["directives.id"],
            name=op.f("fk_directive_replies_directive_id_directives"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["units.id"], name=op.f("fk_directive_replies_unit_id_units")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_directive_replies")),
    )
    with op.batch_alter_table("directive_replies", schema=None) as batch_op:
        batch_op.create_index(
            "ix_directive_replies_directive_unit", ["directive_id", "unit_id"], unique=False
        )

    op.create_table(
        "messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("client_msg_id", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("reply_to", sa.Integer(), nullable=True),
        sa.Column("attachment_ids", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("edited_at", server.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("retracted_at", server.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["author_id"], ["users.id"], name=op.f("fk_messages_author_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name=op.f("fk_messages_channel_id_channels"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reply_to"], ["messages.id"], name=op.f("fk_messages_reply_to_messages")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint(
            "channel_id", "author_id", "client_msg_id", name="uq_messages_channel_author_client"
        ),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index("ix_messages_channel_seq", ["channel_id", "seq"], unique=False)

    op.create_table(
        "message_attachments",
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["files.id"],
            name=op.f("fk_message_attachments_file_id_files"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_message_attachments_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("message_id", "file_id", name=op.f("pk_message_attachments")),
    )
    with op.batch_alter_table("message_attachments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_message_attachments_file_id"), ["file_id"], unique=False
        )

    op.create_table(
        "message_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("replaced_at", server.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_message_versions_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_versions")),
    )
    with op.batch_alter_table("message_versions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_message_versions_message_id"), ["message_id"], unique=False
        )

    op.create_table(
        "reply_attachments",
        sa.Column("reply_id", sa.Integer(), nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["files.id"],
            name=op.f("fk_reply_attachments_file_id_files"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["reply_id"],
            ["directive_replies.id"],
            name=op.f("fk_reply_attachments_reply_id_directive_replies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("reply_id", "file_id", name=op.f("pk_reply_attachments")),
    )
    with op.batch_alter_table("reply_attachments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reply_attachments_file_id"), ["file_id"], unique=False)

    # ### end Alembic commands ###

    dialect = op.get_bind().dialect.name
    for statement in SQLITE_SEARCH if dialect == "sqlite" else POSTGRESQL_SEARCH:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("search_documents_au", "search_documents_ad", "search_documents_ai"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS search_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_search_documents_tsv")
    with op.batch_alter_table("reply_attachments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reply_attachments_file_id"))

    op.drop_table("reply_attachments")
    with op.batch_alter_table("message_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_message_versions_message_id"))

    op.drop_table("message_versions")
    with op.batch_alter_table("message_attachments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_message_attachments_file_id"))

    op.drop_table("message_attachments")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_channel_seq")

    op.drop_table("messages")
    with op.batch_alter_table("directive_replies", schema=None) as batch_op:
        batch_op.drop_index("ix_directive_replies_directive_unit")

    op.drop_table("directive_replies")
    with op.batch_alter_table("directive_recipients", schema=None) as batch_op:
        batch_op.drop_index("ix_directive_recipients_user_seq")
        batch_op.drop_index("ix_directive_recipients_next_reminder")
        batch_op.drop_index("ix_directive_recipients_directive_unit")

    op.drop_table("directive_recipients")
    with op.batch_alter_table("directive_attachments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_directive_attachments_file_id"))

    op.drop_table("directive_attachments")
    with op.batch_alter_table("channel_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_channel_members_user_id"))

    op.drop_table("channel_members")
    with op.batch_alter_table("directives", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_directives_sender_id"))
        batch_op.drop_index(batch_op.f("ix_directives_overdue_notified_at"))

    op.drop_table("directives")
    op.drop_table("channels")
    op.drop_table("search_documents")
