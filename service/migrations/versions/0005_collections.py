"""Collections: people belong to named collections searched apart; API keys may be bound to one.

``collections`` names each collection; ``collection_members`` says who is in which (a person
without a row is in the ``default`` collection, so every person stored before this revision is
in ``default``). ``api_keys.collection``, when set, binds a key to one collection: it searches
only that one (``service.collection_index``).

Downgrading would let bound keys search every person again and lose who is in which collection,
so it is refused while any membership or binding exists.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "collections",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_collections"),
        sa.UniqueConstraint("name", name="uq_collections_name"),
    )
    op.create_table(
        "collection_members",
        sa.Column("collection_pk", sa.Integer(), nullable=False),
        sa.Column("person_pk", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["collection_pk"],
            ["collections.id"],
            name="fk_collection_members_collection_pk_collections",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["person_pk"], ["people.id"], name="fk_collection_members_person_pk_people", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("collection_pk", "person_pk", name="pk_collection_members"),
    )
    op.create_index("ix_collection_members_person_pk", "collection_members", ["person_pk"])
    # plain ADD COLUMN (no SQLite table copy), as in 0003
    op.add_column("api_keys", sa.Column("collection", sa.String(64), nullable=True))


def downgrade() -> None:
    bind = op.get_bind()
    members = int(bind.execute(sa.text("SELECT count(*) FROM collection_members")).scalar() or 0)
    bound = int(
        bind.execute(sa.text("SELECT count(*) FROM api_keys WHERE collection IS NOT NULL")).scalar() or 0
    )
    if members or bound:
        raise RuntimeError(
            f"{members} collection memberships and {bound} keys bound to a collection exist; revision "
            "0004 cannot store them (bound keys would search everyone). Remove them first."
        )
    op.execute(sa.text("ALTER TABLE api_keys DROP COLUMN collection"))
    op.drop_index("ix_collection_members_person_pk", table_name="collection_members")
    op.drop_table("collection_members")
    op.drop_table("collections")
