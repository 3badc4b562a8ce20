"""The mirror in each web process: a compact set of address hashes, kept up to date by the change sequence.

A check asks the view first: an address whose hash is not there is not in the mirror, and is answered with no
database at all (the common case: most recipients never unsubscribed). An address whose hash is there is
confirmed by the database, so a hash collision or a view a moment behind never denies anyone wrongly.

Freshness: at most once a second (POLL_SECONDS) a check reads the mirror's version (one row); when it moved,
the same check applies what changed since (additions, and removals: re-subscribes) before answering. So a
change written by the worker (or pushed by Marketo) is seen by every process within a second.

Memory: 8 bytes per address in one sorted array of 64-bit hashes (8 MB for a mirror of 1,000,000), plus a
small set of recent changes merged into the array when it grows (MERGE_AT). Building it from scratch (first
use, or after the mirror was reset) runs in a background thread; checks ask the database until it is ready.
"""
from __future__ import annotations

import heapq
import logging
import sys
import threading
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence

from sqlalchemy.exc import SQLAlchemyError

from gateway.store.mirror import MirrorRepository

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
MERGE_AT = 50_000  # recent additions kept in a set (~60 bytes each) before they join the sorted array
SORT_CHUNK = 100_000  # hashes sorted at a time while building, so a build never holds a million int objects


def address_hash(email: str) -> int:
    """The view's key for an address (the process's own str hash: 64 bits, never stored outside it)."""
    return hash(email)


def sorted_hashes(emails: Iterable[str]) -> array:
    """The hashes of `emails`, sorted, deduplicated, as one array of 64-bit ints."""
    runs: list[array] = []
    chunk = array("q")
    for email in emails:
        chunk.append(address_hash(email))
        if len(chunk) >= SORT_CHUNK:
            runs.append(array("q", sorted(chunk)))
            chunk = array("q")
    if chunk:
        runs.append(array("q", sorted(chunk)))
    return _unique(heapq.merge(*runs))


def _unique(ordered: Iterable[int]) -> array:
    out = array("q")
    last = None
    for value in ordered:
        if value != last:
            out.append(value)
            last = value
    return out


class HashSet:
    """A set of address hashes: a sorted array plus recent additions and removals, each kept small."""

    def __init__(self, base: array | None = None):
        self.base = base if base is not None else array("q")
        self.added: set[int] = set()
        self.removed: set[int] = set()  # hashes still in `base` that are no longer in the set

    @classmethod
    def of(cls, emails: Iterable[str]) -> HashSet:
        return cls(sorted_hashes(emails))

    def _in_base(self, value: int) -> bool:
        base = self.base
        index = bisect_left(base, value)
        return index < len(base) and base[index] == value

    def __contains__(self, email: str) -> bool:
        value = address_hash(email)
        if value in self.added:
            return True
        return value not in self.removed and self._in_base(value)

    def add(self, emails: Iterable[str]) -> None:
        for email in emails:
            value = address_hash(email)
            self.removed.discard(value)
            if not self._in_base(value):
                self.added.add(value)
        if len(self.added) + len(self.removed) >= MERGE_AT:
            self.merge()

    def remove(self, emails: Iterable[str]) -> None:
        for email in emails:
            value = address_hash(email)
            self.added.discard(value)
            if self._in_base(value):
                self.removed.add(value)

    def merge(self) -> None:
        """Fold the recent changes into the sorted array (a new array, swapped in whole for readers)."""
        removed, added = self.removed, self.added
        kept = (value for value in self.base if value not in removed) if removed else iter(self.base)
        self.base = _unique(heapq.merge(kept, sorted(added)))
        self.added, self.removed = set(), set()

    def __len__(self) -> int:
        return len(self.base) - len(self.removed) + len(self.added)

    def memory_bytes(self) -> int:
        """What the structure holds in memory: the array's buffer and the two sets (Python ints are 32 bytes)."""
        sets = sys.getsizeof(self.added) + sys.getsizeof(self.removed) + 32 * (len(self.added) + len(self.removed))
        return sys.getsizeof(self.base) + sets


class MirrorView:
    """One process's view of the mirror. `unsubscribed_among` answers exactly as the database would."""

    def __init__(self, mirror: MirrorRepository, *, poll_seconds: float = POLL_SECONDS,
                 clock: Callable[[], float] = time.monotonic, build_in_background: bool = True):
        self.mirror = mirror
        self.poll_seconds = poll_seconds
        self.clock = clock
        self.build_in_background = build_in_background
        self.hashes: HashSet | None = None  # None until built
        self.version = -1
        self._polled_at: float | None = None
        self._lock = threading.Lock()
        self._building = False

    def unsubscribed_among(self, emails: Sequence[str]) -> set[str]:
        self.refresh_if_due()
        hashes = self.hashes
        if hashes is None:  # not built yet: the database answers
            return self.mirror.unsubscribed_among(emails)
        candidates = [email for email in emails if email in hashes]
        return self.mirror.unsubscribed_among(candidates) if candidates else set()

    def refresh_if_due(self) -> None:
        polled = self._polled_at
        if polled is not None and self.clock() - polled < self.poll_seconds:
            return
        with self._lock:  # the others wait for the one refreshing: then they too see the change
            polled = self._polled_at
            if polled is not None and self.clock() - polled < self.poll_seconds:
                return
            try:
                self._refresh()
            except SQLAlchemyError:  # the view answers as it stands (a moment behind at worst) until a poll works
                log.warning("could not read the mirror's changes; answering from the view as it is")
            finally:
                self._polled_at = self.clock()

    def refresh(self) -> None:
        """Catch up with the database now (builds in this thread when the view was never built)."""
        with self._lock:
            self._refresh(background=False)
            self._polled_at = self.clock()

    def _refresh(self, background: bool | None = None) -> None:
        current = self.mirror.version()
        if self.hashes is None or current.reset_version > self.version:
            self._build(self.build_in_background if background is None else background)
        elif current.version > self.version:
            changes = self.mirror.changes_since(self.version)
            self.hashes.remove(changes.removed)
            self.hashes.add(changes.added)
            self.version = changes.version

    def _build(self, background: bool) -> None:
        if not background:
            self._build_now()
            return
        if self._building:
            return
        self.hashes = None  # after a reset the old view may hold addresses no longer there: ask the database
        self._building = True
        threading.Thread(target=self._build_in_thread, name="mirror-view-build", daemon=True).start()

    def _build_in_thread(self) -> None:
        try:
            hashes, version = self._read_all()  # without the lock: checks go on (asking the database) meanwhile
            with self._lock:
                self.hashes, self.version = hashes, version  # the next poll catches up from `version`
        except Exception:  # the next poll tries again; meanwhile the database answers
            log.exception("could not build the in-process mirror view")
        finally:
            self._building = False

    def _build_now(self) -> None:
        self.hashes, self.version = self._read_all()

    def _read_all(self) -> tuple[HashSet, int]:
        started = time.monotonic()
        version, emails = self.mirror.snapshot()
        hashes = HashSet.of(emails)
        log.info("mirror view built: %d addresses, %.1f MB, %.2f s", len(hashes), hashes.memory_bytes() / 1e6,
                 time.monotonic() - started)
        return hashes, version
