"""Mirror of Marketo's unsubscribes, sync state and lease, Marketo call counts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mirror_unsubscribes",
        sa.Column("email", sa.String(320), primary_key=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "sync_state",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("load_status", sa.String(16), nullable=False),
        sa.Column("load_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("load_window_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("load_export_id", sa.String(64), nullable=True),
        sa.Column("load_finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("changes_token", sa.String(255), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(100), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
    )
    op.bulk_insert(
        sa.table("sync_state", sa.column("id", sa.Integer()), sa.column("load_status", sa.String())),
        [{"id": 1, "load_status": "not_started"}],
    )
    op.create_table(
        "marketo_calls",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.Column("token", sa.Integer(), nullable=False),
        sa.Column("lookup", sa.Integer(), nullable=False),
        sa.Column("sync", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("marketo_calls")
    op.drop_table("sync_state")
    op.drop_table("mirror_unsubscribes")
