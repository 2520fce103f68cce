"""People can be suspended and given an expiry date.

``people.status`` is ``active`` (every row stored before this revision) or ``suspended``;
``suspended_at`` says since when; ``expires_at`` (optional) is the moment after which the person
is treated as suspended without anyone acting (contractors). Suspended or expired people stay in
the database, with their reference crop and embeddings, but are never matched
(``service.gallery.status``).

Downgrading would make every suspended or expired person matchable again, so it is refused while
any person is suspended or has an expiry date: reactivate or delete them first.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Plain ALTER TABLE ... ADD COLUMN, never SQLite's batch "copy and move": recreating ``people``
    # would drop the old table, and with foreign keys on that deletes (ON DELETE CASCADE) every
    # reference crop and embedding. The check rides on the column, which SQLite accepts there.
    op.add_column(
        "people",
        sa.Column(
            "status",
            sa.String(16),
            sa.CheckConstraint("status IN ('active', 'suspended')", name=op.f("ck_people_status")),
            nullable=False,
            server_default="active",
        ),
    )
    op.add_column("people", sa.Column("suspended_at", TZ, nullable=True))
    op.add_column("people", sa.Column("expires_at", TZ, nullable=True))


def downgrade() -> None:
    held = op.get_bind().execute(
        sa.text("SELECT count(*) FROM people WHERE status <> 'active' OR expires_at IS NOT NULL")
    )
    count = int(held.scalar() or 0)
    if count:
        raise RuntimeError(
            f"{count} people are suspended or have an expiry date; revision 0002 cannot store that and "
            "would make them matchable again. Reactivate (and clear the expiry of) or delete them first."
        )
    # native DROP COLUMN (SQLite 3.35+), for the same reason as above: no table copy
    for column in ("expires_at", "suspended_at", "status"):
        op.execute(sa.text(f"ALTER TABLE people DROP COLUMN {column}"))
