"""oidc: sign-ins through the OpenID provider (state, nonce, PKCE verifier, provider grant)

Revision ID: 0008_oidc_logins
Revises: 0007_admin_auth
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.db

revision = "0008_oidc_logins"
down_revision = "0007_admin_auth"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oidc_logins",
        sa.Column("state", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("code_verifier", sa.String(length=128), nullable=False),
        sa.Column("created_at", server.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("next_path", sa.String(length=300), nullable=True),
        sa.Column("completed_at", server.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("handoff_hash", sa.String(length=64), nullable=True),
        sa.Column("access_token", sa.Text(), nullable=True),
        sa.Column("refresh_token", sa.Text(), nullable=True),
        sa.Column("provider_expires_at", server.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ended_at", server.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("state", name=op.f("pk_oidc_logins")),
        sa.UniqueConstraint("handoff_hash", name=op.f("uq_oidc_logins_handoff_hash")),
    )
    with op.batch_alter_table("oidc_logins", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oidc_logins_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_oidc_logins_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("oidc_logins", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oidc_logins_user_id"))
        batch_op.drop_index(batch_op.f("ix_oidc_logins_created_at"))
    op.drop_table("oidc_logins")
