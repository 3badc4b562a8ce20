"""Marketo's quota day: the daily API quota resets at midnight US Central (America/Chicago, daylight saving included).

The one place that knows it: the client (when a 607 lifts), the gate's call budget, and the simulator ask here.
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

QUOTA_TIMEZONE = ZoneInfo("America/Chicago")


def quota_day(moment: datetime) -> date:
    """The quota day an aware `moment` falls on: its date in US Central."""
    return moment.astimezone(QUOTA_TIMEZONE).date()


def next_quota_reset(moment: datetime) -> datetime:
    """The first 00:00 US Central after an aware `moment`, as an aware UTC datetime."""
    midnight = datetime.combine(quota_day(moment) + timedelta(days=1), time(0), tzinfo=QUOTA_TIMEZONE)
    return midnight.astimezone(timezone.utc)
