"""meetings: when the agenda was published, so a later change reaches the tablets too

Once a meeting's agenda is published, each change to it tells the delegates' tablets to
download the documents again (DIENHONG_PRELOAD_ON_PUBLISH). NULL: never published (every
meeting before this revision).

Revision ID: 0010_agenda_published_at
Revises: 0009_offline_annotation_cid
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.db

revision = "0010_agenda_published_at"
down_revision = "0009_offline_annotation_cid"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("agenda_published_at", server.db.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.drop_column("agenda_published_at")
