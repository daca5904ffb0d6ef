"""remote attendance: how a participant attends, the remote connection, a paused speech

Joining the sitting's media checks a delegate in as remote; the meeting's quorum rule says
whether remote delegates count. A remote participant's live session, connection quality and
the chair's microphone controls are kept with the attendance, so the meeting state shows
them on every node. A speech whose remote speaker's audio is lost stands still: when it
stopped and for how long it stood still before. Merges the heads of the time.

Revision ID: 0011_remote_attendance
Revises: the heads listed below
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.db

revision = "0011_remote_attendance"
down_revision = (
    "0003_messaging",
    "0006_media",
    "0007_sign_documents",
    "0008_oidc_logins",
    "0008_writer_sealed_ballots",
    "0010_agenda_published_at",
)
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "remote_counts_for_quorum", sa.Boolean(), nullable=False, server_default=sa.true()
            )
        )
    with op.batch_alter_table("meeting_attendance", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("mode", sa.String(length=8), nullable=False, server_default="hall")
        )
        batch_op.add_column(sa.Column("media_session_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("connection", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("muted_by", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("unmute_requested", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("meeting_speakers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("paused_at", server.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("paused_secs", sa.Float(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("meeting_speakers", schema=None) as batch_op:
        batch_op.drop_column("paused_secs")
        batch_op.drop_column("paused_at")
    with op.batch_alter_table("meeting_attendance", schema=None) as batch_op:
        for column in ("unmute_requested", "muted_by", "connection", "media_session_id", "mode"):
            batch_op.drop_column(column)
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.drop_column("remote_counts_for_quorum")
