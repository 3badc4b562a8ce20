"""Marketo's quota day: midnight US Central, daylight saving included (gateway.marketo.quota)."""
from datetime import date, datetime, timezone

import pytest

from gateway.budget import seconds_until_reset
from gateway.marketo.quota import next_quota_reset, quota_day


@pytest.mark.parametrize(
    "moment, day",
    [
        (datetime(2026, 11, 27, 5, 59, tzinfo=timezone.utc), date(2026, 11, 26)),  # 23:59 CST
        (datetime(2026, 11, 27, 6, 0, tzinfo=timezone.utc), date(2026, 11, 27)),  # 00:00 CST
        (datetime(2026, 7, 16, 4, 59, tzinfo=timezone.utc), date(2026, 7, 15)),  # 23:59 CDT
        (datetime(2026, 7, 16, 5, 0, tzinfo=timezone.utc), date(2026, 7, 16)),  # 00:00 CDT, not 23:00 of the 15th
        (datetime(2026, 3, 9, 5, 30, tzinfo=timezone.utc), date(2026, 3, 9)),  # the night after DST began
        (datetime(2026, 11, 1, 5, 30, tzinfo=timezone.utc), date(2026, 11, 1)),  # 00:30 CDT, DST's last night
        (datetime(2026, 11, 2, 5, 30, tzinfo=timezone.utc), date(2026, 11, 1)),  # 23:30 CST, the day DST ended
    ],
)
def test_the_quota_day_is_the_date_in_us_central(moment, day):
    assert quota_day(moment) == day


def test_the_quota_day_does_not_depend_on_the_moment_s_own_zone():
    utc = datetime(2026, 7, 16, 5, 0, tzinfo=timezone.utc)
    assert quota_day(utc.astimezone(timezone.max)) == quota_day(utc) == date(2026, 7, 16)


@pytest.mark.parametrize(
    "moment, reset",
    [
        (datetime(2026, 3, 8, 12, 0, tzinfo=timezone.utc), datetime(2026, 3, 9, 5, 0, tzinfo=timezone.utc)),  # a 23 h day
        (datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc), datetime(2026, 11, 2, 6, 0, tzinfo=timezone.utc)),  # a 25 h day
    ],
)
def test_the_budget_waits_until_the_next_us_central_midnight(moment, reset):
    assert next_quota_reset(moment) == reset
    assert seconds_until_reset(moment) == (reset - moment).total_seconds()
