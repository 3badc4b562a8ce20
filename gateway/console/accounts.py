"""Who may open the console: admin accounts made with `gateway admins create`, signed in by name and password.

Passwords are hashed with scrypt (werkzeug). Five wrong passwords in a row lock the account for fifteen
minutes (gateway.store.admins); while it is locked no password is even tried, so guessing stops there.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask_login import UserMixin
from werkzeug.security import check_password_hash, generate_password_hash

from gateway.store import LOCKOUT, MAX_FAILED_SIGN_INS, Admin, Store, utcnow

HASH_METHOD = "scrypt"
MIN_PASSWORD_LENGTH = 12
WRONG = "Wrong name or password."
# Checked when the name is unknown, so a wrong name takes as long as a wrong password.
_UNKNOWN_NAME_HASH = generate_password_hash("not the password of any account", method=HASH_METHOD)


def hash_password(password: str) -> str:
    return generate_password_hash(password, method=HASH_METHOD)


def password_problem(password: str) -> str | None:
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"the password must be at least {MIN_PASSWORD_LENGTH} characters long"
    return None


class ConsoleUser(UserMixin):
    """The signed-in admin as Flask-Login holds it."""

    def __init__(self, admin: Admin):
        self.id = admin.id
        self.name = admin.name

    def get_id(self) -> str:
        return str(self.id)


@dataclass(frozen=True)
class SignIn:
    admin: Admin | None  # None: refused, and `error` says why
    error: str | None = None


def locked_message(until: datetime, now: datetime) -> str:
    minutes = max(1, round((until - now).total_seconds() / 60))
    return (f"This account is locked for {int(LOCKOUT.total_seconds() // 60)} minutes after "
            f"{MAX_FAILED_SIGN_INS} failed sign-ins. Try again at {until:%H:%M} UTC "
            f"(in about {minutes} minute{'s' if minutes != 1 else ''}).")


def sign_in(store: Store, name: str, password: str) -> SignIn:
    now = utcnow()
    admin = store.admins.by_name(name.strip())
    if admin is None:
        check_password_hash(_UNKNOWN_NAME_HASH, password)
        return SignIn(None, WRONG)
    if admin.locked_at(now):
        return SignIn(None, locked_message(admin.locked_until, now))
    if not check_password_hash(admin.password_hash, password):
        admin = store.admins.record_failure(admin.id)
        if admin.locked_at(now):
            return SignIn(None, locked_message(admin.locked_until, now))
        return SignIn(None, WRONG)
    store.admins.record_sign_in(admin.id)
    return SignIn(admin)
