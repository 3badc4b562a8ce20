"""Helpers every repository shares: time in UTC, text every engine can store, key hashing, IN (...) chunks."""
from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone

IN_CHUNK = 900  # bound parameters per IN (...) query, under SQLite's limit on every version


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything the gate writes is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def storable_text(value):
    """Callers' strings as every engine stores them: PostgreSQL's text cannot hold a NUL character."""
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def in_chunks(values: Sequence[str]) -> Iterator[list[str]]:
    """`values` in slices small enough for one IN (...) query."""
    for start in range(0, len(values), IN_CHUNK):
        yield list(values[start:start + IN_CHUNK])
