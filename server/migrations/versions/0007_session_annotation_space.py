"""session: the coordinate space of each annotation

Annotations made before this revision were measured against the viewer's frame (clipped to
the screen's height on landscape tablets), not against the page; they are marked ``frame``
so that readers and the annotated PDF can tell them apart. New ones are ``page``: fractions
of the PDF page, origin at its top left.

Revision ID: 0007_session_annotation_space
Revises: 0004_meeting
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_session_annotation_space"
down_revision = "0004_meeting"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("annotations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("space", sa.String(length=8), nullable=False, server_default="frame")
        )


def downgrade() -> None:
    with op.batch_alter_table("annotations", schema=None) as batch_op:
        batch_op.drop_column("space")
