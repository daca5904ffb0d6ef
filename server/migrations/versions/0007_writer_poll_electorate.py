"""polls: the electorate, fixed when a poll opens

Revision ID: 0007_writer_poll_electorate
Revises: 0005_polls
Create Date: 2026-11-30

The members entitled to vote are recorded in the poll when it opens; changing the
meeting's participants while it is open changes neither the base of the majority nor who
may vote. Polls opened before this revision keep NULL and are counted as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_writer_poll_electorate"
down_revision = "0005_polls"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("polls") as batch:
        batch.add_column(sa.Column("electorate", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("polls") as batch:
        batch.drop_column("electorate")
