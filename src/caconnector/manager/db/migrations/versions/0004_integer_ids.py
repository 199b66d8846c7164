"""stable integer ids for certificates, profiles and organizations (the compatible REST API's ids)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 23:00:00.000000

A new table only: nothing existing is altered, so no batch mode. Rows are made on first use, so
certificates and profiles already there get their numbers when a client of that API first sees them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "integer_ids",
        sa.Column("number", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ref", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("number"),
        sa.UniqueConstraint("kind", "ref"),
    )


def downgrade() -> None:
    op.drop_table("integer_ids")
