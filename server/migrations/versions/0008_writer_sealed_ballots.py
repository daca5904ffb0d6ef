"""polls: sealed ballots of open secret polls

Revision ID: 0008_writer_sealed_ballots
Revises: 0007_writer_poll_electorate
Create Date: 2026-11-30

While a secret poll is open its ballots are stored sealed (a keyed hash of the receipt
and the encrypted receipt and choice); the close writes the plain box. WITHOUT ROWID on
SQLite, like the roll and the box: no hidden insertion counter.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_writer_sealed_ballots"
down_revision = "0007_writer_poll_electorate"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "poll_sealed_ballots",
        sa.Column("poll_id", sa.Integer(), nullable=False),
        sa.Column("slot", sa.String(length=64), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["poll_id"],
            ["polls.id"],
            name=op.f("fk_poll_sealed_ballots_poll_id_polls"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("poll_id", "slot", name=op.f("pk_poll_sealed_ballots")),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("poll_sealed_ballots")
