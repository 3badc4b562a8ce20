"""API keys made by `gateway keys create`: only a key's SHA-256 is kept, with its role, sources and signing secret."""
from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update

from gateway.domain import SOURCES
from gateway.store.common import as_utc, hash_key, utcnow
from gateway.store.models import ApiKey
from gateway.store.repository import Repository


@dataclass(frozen=True)
class StoredKey:
    id: int
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None
    sources: tuple[str, ...] | None = None  # None: any source
    require_signature: bool = False
    signing_secret: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class NewKey:
    """What `KeysRepository.create` hands back once: the key, and the signing secret when it requires signatures."""

    key: str
    signing_secret: str | None = field(default=None, repr=False)


class KeysRepository(Repository):
    def create(self, name: str, role: str, *, sources: Sequence[str] | None = None,
               require_signature: bool = False) -> NewKey:
        """Returns the new key; only its hash is stored, so this is the one time it can be seen.

        With `require_signature` the key also gets a Standard Webhooks signing secret, `whsec_<base64>`.
        The secret is stored as it is, not hashed (verifying an HMAC needs the secret itself) and not
        derived from SECRET_KEY + name + creation time: a derived secret would tie every Salesforce org's
        signatures to SECRET_KEY, so rotating SECRET_KEY (which signs admin sessions) would silently break
        them all, and it would hang on a timestamp reading back identically from SQLite and PostgreSQL.
        Storing it costs little: a copy of the database alone still cannot call the gate, because the
        bearer key that must come with every signed request is kept only as its SHA-256.
        """
        sources = tuple(dict.fromkeys(sources or ()))
        unknown = [source for source in sources if source not in SOURCES]
        if unknown:
            raise ValueError(f"unknown sources {unknown}; a key's sources are among {', '.join(SOURCES)}")
        key = "gk_" + secrets.token_urlsafe(32)
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode() if require_signature else None
        with self._writing() as session:
            session.add(ApiKey(
                name=name, role=role, key_hash=hash_key(key), created_at=utcnow(),
                sources=",".join(sources) or None, require_signature=require_signature, signing_secret=secret,
            ))
        return NewKey(key, secret)

    def by_hash(self, key_hash: str) -> StoredKey | None:
        """The key with this hash, unless it was revoked."""
        with self._reading() as session:
            row = session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None)))
            return None if row is None else _stored_key(row)

    def touch(self, key_id: int) -> None:
        with self._writing() as session:
            session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=utcnow()))

    def revoke(self, name: str) -> bool:
        with self._writing() as session:
            result = session.execute(
                update(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())
            )
            return result.rowcount > 0

    def all(self) -> list[StoredKey]:
        """Every key, revoked ones too, by name."""
        with self._reading() as session:
            return [_stored_key(row) for row in session.scalars(select(ApiKey).order_by(ApiKey.name))]


def _stored_key(row: ApiKey) -> StoredKey:
    return StoredKey(
        id=row.id,
        name=row.name,
        role=row.role,
        created_at=as_utc(row.created_at),
        revoked_at=as_utc(row.revoked_at),
        last_used_at=as_utc(row.last_used_at),
        sources=tuple(row.sources.split(",")) if row.sources else None,
        require_signature=bool(row.require_signature),
        signing_secret=row.signing_secret,
    )
