"""media: recordings of the floor

Revision ID: 0006_media
Revises: 0004_meeting
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.db

revision = "0006_media"
down_revision = "0004_meeting"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "media_recordings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("meeting_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=500), nullable=False),
        sa.Column("started_by", sa.Integer(), nullable=True),
        sa.Column("started_at", server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", server.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("duration_secs", sa.Float(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("dropped_packets", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["meeting_id"],
            ["meetings.id"],
            name=op.f("fk_media_recordings_meeting_id_meetings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media_recordings")),
        sa.UniqueConstraint("path", name=op.f("uq_media_recordings_path")),
    )
    with op.batch_alter_table("media_recordings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_media_recordings_meeting_id"), ["meeting_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("media_recordings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_media_recordings_meeting_id"))
    op.drop_table("media_recordings")
