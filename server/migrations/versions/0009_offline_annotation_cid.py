"""offline: a client id per annotation, so a tablet can resend its queue safely

A tablet writes annotations while offline and sends them when the network returns; a resend
of the same annotation (the answer was lost) carries the same client id and gets the stored
annotation back instead of a second copy. Unique per reader; empty for older rows.

Revision ID: 0009_offline_annotation_cid
Revises: 0007_session_annotation_space
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_offline_annotation_cid"
down_revision = "0007_session_annotation_space"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("annotations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("client_id", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_annotations_user_client", ["user_id", "client_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("annotations", schema=None) as batch_op:
        batch_op.drop_index("ix_annotations_user_client")
        batch_op.drop_column("client_id")
