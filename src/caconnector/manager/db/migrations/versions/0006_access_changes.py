"""a counter of connector deletes and key changes, kept by triggers on SQLite

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 12:00:00.000000

The SQLite manager's watcher of parked polls reads this counter each round instead of every parked
connector's row (services.sqlite_watch). PostgreSQL uses NOTIFY for the same and gets no triggers.
A later migration that rebuilds `connectors` on SQLite (batch mode) drops these triggers with the old
table, and must create them again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_BUMP = "UPDATE access_changes SET count = count + 1 WHERE id = 1"
_TRIGGERS = {
    "connectors_deleted_bump_access_changes": f"AFTER DELETE ON connectors BEGIN {_BUMP}; END",
    "connectors_key_changed_bump_access_changes": (
        "AFTER UPDATE OF public_key_pem ON connectors "
        "WHEN OLD.public_key_pem IS NOT NEW.public_key_pem "
        f"BEGIN {_BUMP}; END"
    ),
}


def upgrade() -> None:
    op.create_table(
        "access_changes",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO access_changes (id, count) VALUES (1, 0)")
    if op.get_bind().dialect.name == "sqlite":
        for name, body in _TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {body}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in _TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_table("access_changes")
