"""Admin accounts for the console: a name, a password hash, and the count of failed sign-ins that locks it."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.store.common import as_utc, utcnow
from gateway.store.models import AdminAccount
from gateway.store.repository import Repository

MAX_FAILED_SIGN_INS = 5
LOCKOUT = timedelta(minutes=15)


class AdminExists(Exception):
    """An account of that name exists already."""


@dataclass(frozen=True)
class Admin:
    id: int
    name: str
    password_hash: str
    created_at: datetime
    failed_attempts: int
    locked_until: datetime | None
    last_sign_in_at: datetime | None

    def locked_at(self, now: datetime) -> bool:
        return self.locked_until is not None and self.locked_until > now


class AdminsRepository(Repository):
    def create(self, name: str, password_hash: str) -> Admin:
        try:
            with self._writing() as session:
                session.add(AdminAccount(name=name, password_hash=password_hash, created_at=utcnow(), failed_attempts=0))
        except IntegrityError:
            raise AdminExists(name) from None
        return self.by_name(name)

    def by_name(self, name: str) -> Admin | None:
        with self._reading() as session:
            row = session.scalars(select(AdminAccount).where(AdminAccount.name == name)).first()
            return _admin(row) if row else None

    def by_id(self, admin_id: int) -> Admin | None:
        with self._reading() as session:
            row = session.get(AdminAccount, admin_id)
            return _admin(row) if row else None

    def all(self) -> list[Admin]:
        with self._reading() as session:
            return [_admin(row) for row in session.scalars(select(AdminAccount).order_by(AdminAccount.name))]

    def set_password(self, name: str, password_hash: str) -> bool:
        """A new password also lifts a lockout."""
        with self._writing() as session:
            result = session.execute(update(AdminAccount).where(AdminAccount.name == name).values(
                password_hash=password_hash, failed_attempts=0, locked_until=None))
            return result.rowcount == 1

    def delete(self, name: str) -> bool:
        with self._writing() as session:
            row = session.scalars(select(AdminAccount).where(AdminAccount.name == name)).first()
            if row is None:
                return False
            session.delete(row)
            return True

    def record_failure(self, admin_id: int, *, session: Session | None = None) -> Admin:
        """Count a wrong password; the fifth in a row locks the account for LOCKOUT and starts the count again.

        The count is raised in the database (`failed_attempts + 1`), so sign-ins racing in several
        processes cannot lose a failure.
        """
        now = utcnow()
        with self._writing(session) as session:
            session.execute(update(AdminAccount).where(AdminAccount.id == admin_id)
                            .values(failed_attempts=AdminAccount.failed_attempts + 1))
            session.execute(update(AdminAccount)
                            .where(AdminAccount.id == admin_id, AdminAccount.failed_attempts >= MAX_FAILED_SIGN_INS)
                            .values(failed_attempts=0, locked_until=now + LOCKOUT))
            return _admin(session.get(AdminAccount, admin_id, populate_existing=True))

    def record_sign_in(self, admin_id: int) -> None:
        with self._writing() as session:
            session.execute(update(AdminAccount).where(AdminAccount.id == admin_id).values(
                failed_attempts=0, locked_until=None, last_sign_in_at=utcnow()))


def _admin(row: AdminAccount) -> Admin:
    return Admin(
        id=row.id,
        name=row.name,
        password_hash=row.password_hash,
        created_at=as_utc(row.created_at),
        failed_attempts=row.failed_attempts,
        locked_until=as_utc(row.locked_until),
        last_sign_in_at=as_utc(row.last_sign_in_at),
    )
