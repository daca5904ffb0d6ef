"""files: the text of a PDF is read after its upload is answered

An uploaded PDF is stored with ``text_pending`` set; a text worker reads its text for
search afterwards and clears the flag. A restart picks up the files still pending. Every
file stored before this revision already has its text.

Revision ID: 0012_file_text_pending
Revises: 0011_remote_attendance
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_file_text_pending"
down_revision = "0011_remote_attendance"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("text_pending", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.drop_column("text_pending")
