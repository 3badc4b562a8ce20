"""Salesforce: the outbox of Tasks and opt-outs owed to Salesforce, and the state of the connection.

Revision ID: 0006
Revises: 0003
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "salesforce_outbox",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("marker", sa.String(40), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("check_id", sa.String(40), nullable=True),
        sa.Column("source", sa.String(20), nullable=True),
        sa.Column("workflow", sa.String(32), nullable=True),
        sa.Column("sender", sa.String(320), nullable=True),
        sa.Column("reason_code", sa.String(32), nullable=True),
        sa.Column("message_id", sa.String(255), nullable=True),
        sa.Column("owner_id", sa.String(18), nullable=True),
        sa.Column("attempt_id", sa.String(40), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("who_id", sa.String(18), nullable=True),
        sa.Column("task_id", sa.String(18), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("marker", name="uq_salesforce_outbox_marker"),
    )
    op.create_index("ix_salesforce_outbox_status", "salesforce_outbox", ["status"])
    op.create_index("ix_salesforce_outbox_attempt_id", "salesforce_outbox", ["attempt_id"])
    state = op.create_table(
        "salesforce_state",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("connected", sa.Boolean(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.bulk_insert(state, [{"id": 1, "failures": 0}])


def downgrade() -> None:
    op.drop_table("salesforce_state")
    op.drop_index("ix_salesforce_outbox_attempt_id", table_name="salesforce_outbox")
    op.drop_index("ix_salesforce_outbox_status", table_name="salesforce_outbox")
    op.drop_table("salesforce_outbox")
