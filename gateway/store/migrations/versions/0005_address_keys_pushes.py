"""The mirror keyed by the one address key (gateway.addresses.address_key); unsubscribes pushed by Marketo.

Mirror rows were keyed `strip().lower()`, so `user@xn--bcher-kva.example` and a decomposed (NFD) `renée`
did not match what callers send. This re-keys every row whose key changes; two rows that become one key
merge into one (every mirror row is an unsubscribe, so the merged row is unsubscribed: it keeps the
earliest `changed_at`). `pushed_at` marks a row written by a push from Marketo (POST /v1/hooks/marketo).

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op

from gateway.addresses import address_key

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

mirror = sa.table(
    "mirror_unsubscribes",
    sa.column("email", sa.String),
    sa.column("changed_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    op.add_column("mirror_unsubscribes", sa.Column("pushed_at", sa.DateTime(timezone=True), nullable=True))
    rekey_mirror(op.get_bind())


def rekey_mirror(connection) -> None:
    """Plain ASCII rows keep their key, so this reads every address once and writes only the few that move."""
    moves: dict[str, list[tuple[str, object]]] = {}
    kept: dict[str, object] = {}
    for email, changed_at in connection.execute(sa.select(mirror.c.email, mirror.c.changed_at)):
        key = address_key(email) or email
        if key == email:
            kept[email] = changed_at
        else:
            moves.setdefault(key, []).append((email, changed_at))
    for key, rows in moves.items():
        connection.execute(mirror.delete().where(mirror.c.email.in_([email for email, _ in rows])))
        earliest = min(changed_at for _, changed_at in rows)
        if key in kept:
            if earliest < kept[key]:
                connection.execute(mirror.update().where(mirror.c.email == key).values(changed_at=earliest))
        else:
            connection.execute(mirror.insert().values(email=key, changed_at=earliest))


def downgrade() -> None:
    # The old keys are not kept: rows stay under their new keys, which the old code reads as plain strings.
    with op.batch_alter_table("mirror_unsubscribes") as batch:
        batch.drop_column("pushed_at")
