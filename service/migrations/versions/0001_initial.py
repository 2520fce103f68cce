"""Initial schema: people, reference crops, embeddings, API keys, audit, change log.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "people",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("person_id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_people"),
        sa.UniqueConstraint("person_id", name="uq_people_person_id"),
    )
    op.create_index("ix_people_created_at", "people", ["created_at", "person_id"])

    op.create_table(
        "reference_crops",
        sa.Column("person_pk", sa.Integer(), nullable=False),
        sa.Column("image_png", sa.LargeBinary(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("photo_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["person_pk"], ["people.id"], name="fk_reference_crops_person_pk_people", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("person_pk", name="pk_reference_crops"),
    )

    op.create_table(
        "embeddings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("person_pk", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(100), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["person_pk"], ["people.id"], name="fk_embeddings_person_pk_people", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_embeddings"),
        sa.UniqueConstraint("person_pk", "model_version", name="uq_embeddings_person_model"),
        sqlite_autoincrement=True,  # embedding ids are FAISS ids: never reuse one
    )
    op.create_index("ix_embeddings_model_version", "embeddings", ["model_version"])

    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("scopes", sa.String(100), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("last_used_at", TZ, nullable=True),
        sa.Column("revoked_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )
    op.create_index("ix_api_keys_prefix", "api_keys", ["prefix"])

    op.create_table(
        "audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("key_name", sa.String(100), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("person_id", sa.String(128), nullable=True),
        sa.Column("result", sa.String(32), nullable=False),
        sa.Column("score", sa.Double(), nullable=True),
        sa.Column("model_version", sa.String(100), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit"),
    )
    op.create_index("ix_audit_at", "audit", ["at"])
    op.create_index("ix_audit_person_id", "audit", ["person_id"])

    op.create_table(
        "change_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("op", sa.String(16), nullable=False),
        sa.Column("person_id", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_change_log"),
        sa.CheckConstraint("op IN ('upsert', 'delete')", name="ck_change_log_op"),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("change_log")
    op.drop_index("ix_audit_person_id", table_name="audit")
    op.drop_index("ix_audit_at", table_name="audit")
    op.drop_table("audit")
    op.drop_index("ix_api_keys_prefix", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_index("ix_embeddings_model_version", table_name="embeddings")
    op.drop_table("embeddings")
    op.drop_table("reference_crops")
    op.drop_index("ix_people_created_at", table_name="people")
    op.drop_table("people")
