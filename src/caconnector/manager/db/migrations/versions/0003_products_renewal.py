"""backends report products apart from templates; certificates keep the CA's suggested renewal window

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 22:50:00.000000

Rows already there get an empty product list (the next inventory fills it) and no renewal window.

Plain ALTER TABLE, not batch mode: on SQLite batch mode rebuilds `backends` (copy, drop, rename), and
with foreign keys on, dropping it would cascade to its CAs. SQLite adds a column with a constant default
and (3.35 and later) drops one in place.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "backends", sa.Column("products", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
    )
    op.add_column("certificates", sa.Column("renewal_window", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("certificates", "renewal_window")
    op.drop_column("backends", "products")
