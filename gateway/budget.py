"""The gate's daily budget of Marketo calls: the quota belongs to the marketing team, not to us."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from gateway.marketo import MarketoBudgetExhausted
from gateway.marketo.quota import next_quota_reset, quota_day
from gateway.store import Store, utcnow

# The sync may spend this share of the budget, live lookups the rest: neither can eat the other's share.
SYNC_SHARE = 0.8


def seconds_until_reset(moment: datetime) -> float:
    return (next_quota_reset(moment) - moment).total_seconds()


class CallBudget:
    """The client's `on_call` hook: counts every call in the database and refuses one past its kind's share.

    Counting and refusing are one atomic UPDATE, so any number of processes together stay within it.
    """

    def __init__(self, store: Store, daily_limit: int, now: Callable[[], datetime] = utcnow):
        self.store = store
        self.daily_limit = daily_limit
        self.now = now

    @property
    def sync_limit(self) -> int:
        return int(self.daily_limit * SYNC_SHARE)

    @property
    def lookup_limit(self) -> int:
        return self.daily_limit - self.sync_limit

    def cap_for(self, kind: str) -> int | None:
        if kind == "token":
            return None  # the identity endpoint does not count against Marketo's quota
        return self.sync_limit if kind == "sync" else self.lookup_limit

    def give_back(self, kind: str) -> None:
        """The client's `on_unanswered` hook: a call with no answer or a 5xx is not charged, but counted apart."""
        self.store.calls.give_back(quota_day(self.now()), kind)

    def __call__(self, kind: str) -> None:
        cap = self.cap_for(kind)
        if not self.store.calls.take(quota_day(self.now()), kind, cap):
            raise MarketoBudgetExhausted(
                f"the gate's daily budget of {cap} Marketo calls for {kind} is spent; no more until midnight US Central"
            )

    def sync_calls_left(self) -> int:
        """Calls the sync may still make today (its share, less what it spent)."""
        return self.sync_limit - self.store.calls.counts(quota_day(self.now())).sync

    def sync_pause(self, interval: float) -> float:
        """Seconds to wait before the next sync: the interval, stretched so that the sync's share left today
        still pays for one idle sync (one call: a page of the change stream) per pause until the reset.

        Paced by that steady cost, never by the last sync's: the calls a burst of changes takes (about three a
        sync) or the full load's are spent from the share, so they stretch the pause only as far as they
        emptied it, not threefold from the next sync on."""
        left = self.sync_calls_left()
        until_reset = seconds_until_reset(self.now())
        if left <= 0:
            return until_reset
        return max(interval, until_reset / left)
