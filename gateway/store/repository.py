"""The shape every repository has: one concern's tables over the shared sessionmaker, plain dataclasses out.

A repository method that takes `session=` runs in the caller's session when given one, so several
repositories' writes can be one transaction (`with store.transaction() as session: ...`); without it the
method opens, commits and closes its own. No ORM row ever leaves a repository: it is copied into a frozen
dataclass while its session is open.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session, sessionmaker


class Repository:
    def __init__(self, sessions: sessionmaker[Session]):
        self._sessions = sessions

    @contextmanager
    def _reading(self, session: Session | None = None) -> Iterator[Session]:
        """The caller's session, or a fresh one closed (and rolled back) afterwards."""
        if session is not None:
            yield session
            return
        with self._sessions() as own:
            yield own

    @contextmanager
    def _writing(self, session: Session | None = None) -> Iterator[Session]:
        """The caller's session (the caller commits), or a fresh transaction committed on leaving."""
        if session is not None:
            yield session
            return
        with self._sessions.begin() as own:
            yield own
