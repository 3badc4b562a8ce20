"""Marketo calls that got no answer or a 5xx, counted apart from the ones charged against the budget.

Revision ID: 0007
Revises: 0003
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("marketo_calls", sa.Column("unanswered", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("marketo_calls") as batch:
        batch.drop_column("unanswered")
