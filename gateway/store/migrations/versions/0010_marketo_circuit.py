"""Marketo's circuit breaker, shared by every process of the app: one row, so probes are counted app-wide.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "marketo_circuit",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("is_open", sa.Boolean(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_probe_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("opened_total", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("probes_total", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.bulk_insert(
        sa.table("marketo_circuit", sa.column("id", sa.Integer()), sa.column("is_open", sa.Boolean())),
        [{"id": 1, "is_open": False}],
    )


def downgrade() -> None:
    op.drop_table("marketo_circuit")
