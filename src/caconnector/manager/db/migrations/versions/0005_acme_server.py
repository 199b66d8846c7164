"""the ACME server: account bindings (EAB), per-profile validation setting, accounts, orders,
authorizations and nonces

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 23:00:00.000000

New tables only, no change to an existing one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from caconnector.manager.db.types import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _when(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "acme_bindings",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("hmac_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("profile_id", sa.String(length=32), nullable=False),
        sa.Column("domains", sa.JSON(), nullable=False),
        sa.Column("comments", sa.Text(), nullable=False),
        _when("created_at"),
        _when("revoked_at", nullable=True),
        sa.ForeignKeyConstraint(["profile_id"], ["profiles.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kid"),
    )
    op.create_index("ix_acme_bindings_profile_id", "acme_bindings", ["profile_id"])
    op.create_table(
        "acme_profile_settings",
        sa.Column("profile_id", sa.String(length=32), nullable=False),
        sa.Column("real_validation", sa.Boolean(), nullable=False),
        _when("updated_at"),
        sa.ForeignKeyConstraint(["profile_id"], ["profiles.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("profile_id"),
    )
    op.create_table(
        "acme_accounts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("binding_id", sa.String(length=32), nullable=False),
        sa.Column("thumbprint", sa.String(length=64), nullable=False),
        sa.Column("jwk", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("contact", sa.JSON(), nullable=False),
        _when("created_at"),
        sa.ForeignKeyConstraint(["binding_id"], ["acme_bindings.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("thumbprint"),
    )
    op.create_index("ix_acme_accounts_binding_id", "acme_accounts", ["binding_id"])
    op.create_table(
        "acme_orders",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("identifiers", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        _when("expires_at"),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("replaces", sa.String(length=32), nullable=True),
        sa.Column("certificate_id", sa.String(length=32), nullable=True),
        _when("created_at"),
        sa.ForeignKeyConstraint(["account_id"], ["acme_accounts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["certificate_id"], ["certificates.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_acme_orders_account_id", "acme_orders", ["account_id"])
    op.create_index("ix_acme_orders_certificate_id", "acme_orders", ["certificate_id"])
    op.create_index("ix_acme_orders_created_at", "acme_orders", ["created_at"])
    op.create_table(
        "acme_authorizations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("order_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("identifier", sa.String(length=255), nullable=False),
        sa.Column("wildcard", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("prevalidated", sa.Boolean(), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("challenges", sa.JSON(), nullable=False),
        _when("expires_at"),
        sa.ForeignKeyConstraint(["order_id"], ["acme_orders.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_acme_authorizations_order_id", "acme_authorizations", ["order_id"])
    op.create_table(
        "acme_nonces",
        sa.Column("value", sa.String(length=64), nullable=False),
        _when("expires_at"),
        sa.PrimaryKeyConstraint("value"),
    )
    op.create_index("ix_acme_nonces_expires_at", "acme_nonces", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_acme_nonces_expires_at", table_name="acme_nonces")
    op.drop_table("acme_nonces")
    op.drop_index("ix_acme_authorizations_order_id", table_name="acme_authorizations")
    op.drop_table("acme_authorizations")
    for column in ("created_at", "certificate_id", "account_id"):
        op.drop_index(f"ix_acme_orders_{column}", table_name="acme_orders")
    op.drop_table("acme_orders")
    op.drop_index("ix_acme_accounts_binding_id", table_name="acme_accounts")
    op.drop_table("acme_accounts")
    op.drop_table("acme_profile_settings")
    op.drop_index("ix_acme_bindings_profile_id", table_name="acme_bindings")
    op.drop_table("acme_bindings")
