"""Settings, blocked-send log, API keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "gate_settings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("marketo_check_enabled", sa.Boolean(), nullable=False),
        sa.Column("failure_mode", sa.String(8), nullable=True),
        sa.Column("marketo_connected", sa.Boolean(), nullable=True),
        sa.Column("marketo_message", sa.Text(), nullable=True),
        sa.Column("marketo_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_by", sa.String(100), nullable=True),
    )
    # The single settings row exists from the start, so no process has to race to create it.
    op.bulk_insert(
        sa.table("gate_settings", sa.column("id", sa.Integer()), sa.column("marketo_check_enabled", sa.Boolean())),
        [{"id": 1, "marketo_check_enabled": False}],
    )
    op.create_table(
        "blocked_sends",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("check_id", sa.String(40), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("workflow", sa.String(32), nullable=False),
        sa.Column("sender", sa.String(320), nullable=True),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("reason_code", sa.String(32), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=True),
    )
    op.create_index("ix_blocked_sends_check_id", "blocked_sends", ["check_id"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_index("ix_blocked_sends_check_id", table_name="blocked_sends")
    op.drop_table("blocked_sends")
    op.drop_table("gate_settings")
