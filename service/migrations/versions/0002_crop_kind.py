"""Reference crops say what they are: ``chip`` (the enrolling model's crop) or ``canvas``.

Rows stored before this revision are the enrolling model's own aligned crop and become ``chip``;
enrolments from now on store the model-independent canvas (``service.pipeline.canvas``).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reference_crops") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="chip"))
        batch.create_check_constraint("ck_reference_crops_kind", "kind IN ('chip', 'canvas')")


def downgrade() -> None:
    # a canvas's meta also records its frame as an ``alignment`` (size and template), which is
    # what the older code realigns a crop from: downgrading keeps the rows, only the marker goes
    with op.batch_alter_table("reference_crops") as batch:
        batch.drop_constraint("ck_reference_crops_kind", type_="check")
        batch.drop_column("kind")
