"""polls: polls, the roll of voters, the ballot box

Revision ID: 0005_polls
Revises: 0004_meeting
Create Date: 2026-11-23

The roll (poll_voters) and the box (poll_ballots) have composite primary keys and no
sequence; on SQLite they are WITHOUT ROWID tables, so no hidden insertion counter exists
that could tie a roll entry to a ballot of a secret poll.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.db

revision = "0005_polls"
down_revision = "0004_meeting"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "polls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("meeting_id", sa.Integer(), nullable=False),
        sa.Column("agenda_item_id", sa.Integer(), nullable=True),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("max_choices", sa.Integer(), nullable=False),
        sa.Column("secret", sa.Boolean(), nullable=False),
        sa.Column("rule", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("duration_secs", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=False),
        sa.Column("created_at", server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("opened_at", server.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("closes_at", server.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("closed_at", server.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.Integer(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("ballots_digest", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["agenda_item_id"],
            ["agenda_items.id"],
            name=op.f("fk_polls_agenda_item_id_agenda_items"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_polls_created_by_users"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["meeting_id"],
            ["meetings.id"],
            name=op.f("fk_polls_meeting_id_meetings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_polls")),
    )
    with op.batch_alter_table("polls", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_polls_meeting_id"), ["meeting_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_polls_state"), ["state"], unique=False)
        batch_op.create_index(batch_op.f("ix_polls_closes_at"), ["closes_at"], unique=False)

    op.create_table(
        "poll_voters",
        sa.Column("poll_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("user_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("retry_check", sa.String(length=64), nullable=False),
        sa.Column("choice", sa.JSON(), nullable=True),
        sa.Column("receipt", sa.String(length=32), nullable=True),
        sa.Column("voted_at", server.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["poll_id"], ["polls.id"], name=op.f("fk_poll_voters_poll_id_polls"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_poll_voters_user_id_users"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("poll_id", "user_id", name=op.f("pk_poll_voters")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "poll_ballots",
        sa.Column("poll_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("receipt", sa.String(length=32), nullable=False),
        sa.Column("choice", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["poll_id"],
            ["polls.id"],
            name=op.f("fk_poll_ballots_poll_id_polls"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("poll_id", "receipt", name=op.f("pk_poll_ballots")),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("poll_ballots")
    op.drop_table("poll_voters")
    with op.batch_alter_table("polls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_polls_closes_at"))
        batch_op.drop_index(batch_op.f("ix_polls_state"))
        batch_op.drop_index(batch_op.f("ix_polls_meeting_id"))
    op.drop_table("polls")
