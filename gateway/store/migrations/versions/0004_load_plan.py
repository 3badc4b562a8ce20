"""The mirror's full load as a plan of export jobs (several in flight at once, or one list), and its source.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (nullable) works on SQLite without a table rebuild.
    op.add_column("sync_state", sa.Column("load_plan", sa.JSON(), nullable=True))
    op.add_column("sync_state", sa.Column("load_source", sa.String(300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sync_state") as batch:
        batch.drop_column("load_source")
        batch.drop_column("load_plan")
