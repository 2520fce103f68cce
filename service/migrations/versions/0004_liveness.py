"""Liveness challenges and the single-use tokens a passed check issues.

``liveness_challenges`` holds each challenge the service handed out (its random steps, who asked,
when it expires, when it was used); ``liveness_tokens`` the token a passed check returns, stored
by the SHA-256 of its secret (the secret itself is never stored), with the live face's embedding
sealed like a gallery template (``service.gallery.cipher``, associated data naming the row).
Both live in the database, not in a process, so every replica sharing one PostgreSQL accepts a
challenge another replica issued, redeems a token at most once (a conditional ``UPDATE``), and a
restart loses neither. Rows past their expiry are purged as new ones are written.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "liveness_challenges",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("used_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_liveness_challenges"),
    )
    op.create_index("ix_liveness_challenges_expires_at", "liveness_challenges", ["expires_at"])

    op.create_table(
        "liveness_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("challenge_id", sa.String(64), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("model_version", sa.String(100), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("used_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name="pk_liveness_tokens"),
    )
    op.create_index("ix_liveness_tokens_expires_at", "liveness_tokens", ["expires_at"])


def downgrade() -> None:
    # nothing here outlives a minute: dropping the tables loses only challenges and tokens in flight
    op.drop_index("ix_liveness_tokens_expires_at", table_name="liveness_tokens")
    op.drop_table("liveness_tokens")
    op.drop_index("ix_liveness_challenges_expires_at", table_name="liveness_challenges")
    op.drop_table("liveness_challenges")
