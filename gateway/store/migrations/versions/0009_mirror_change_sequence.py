"""The mirror's change sequence: every write to the mirror gets the next number, so web processes can follow it.

`sync_state.mirror_version` counts mirror writes; each mirror row carries the number of the write that added
it, each removal (a re-subscribe) leaves a `mirror_removals` row with its number, and a clear sets
`mirror_reset_version`. A process holding an in-process view asks "what changed since N" (gateway/mirror_view.py).

Revision ID: 0009
Revises: 0003
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Existing rows are version 0: a view built from scratch reads them all anyway.
    op.add_column("mirror_unsubscribes", sa.Column("version", sa.BigInteger(), nullable=False, server_default="0"))
    op.create_index("ix_mirror_unsubscribes_version", "mirror_unsubscribes", ["version"])
    op.add_column("sync_state", sa.Column("mirror_version", sa.BigInteger(), nullable=False, server_default="0"))
    op.add_column("sync_state", sa.Column("mirror_reset_version", sa.BigInteger(), nullable=False,
                                          server_default="0"))
    op.create_table(
        "mirror_removals",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
    )
    op.create_index("ix_mirror_removals_version", "mirror_removals", ["version"])


def downgrade() -> None:
    op.drop_index("ix_mirror_removals_version", table_name="mirror_removals")
    op.drop_table("mirror_removals")
    with op.batch_alter_table("sync_state") as batch:
        batch.drop_column("mirror_reset_version")
        batch.drop_column("mirror_version")
    op.drop_index("ix_mirror_unsubscribes_version", table_name="mirror_unsubscribes")
    with op.batch_alter_table("mirror_unsubscribes") as batch:
        batch.drop_column("version")
