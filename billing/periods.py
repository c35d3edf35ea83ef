"""Quota windows and billing months, computed in the tenant's time zone.

Free plans reset daily at 00:00 local time; monthly and contract plans reset on the first
of the local calendar month, which is also the billing period that invoices cover. Pure
date arithmetic: no queries.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from billing.choices import AllowancePeriod


def _local_midnight(day: dt.date, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=tz)


def month_bounds(day: dt.date) -> tuple[dt.date, dt.date]:
    """First day of ``day``'s month and first day of the next month (exclusive end)."""
    start = day.replace(day=1)
    end = (start + dt.timedelta(days=32)).replace(day=1)
    return start, end


def month_previous(day: dt.date) -> dt.date:
    """First day of the calendar month before ``day``'s (the period a month-end close bills)."""
    return (day.replace(day=1) - dt.timedelta(days=1)).replace(day=1)


def days_window_start(*, days: int, now: dt.datetime, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    """Local midnight that starts the last ``days`` calendar days (today included) in ``tz``."""
    first = now.astimezone(tz).date() - dt.timedelta(days=days - 1)
    return _local_midnight(first, tz)


def billing_month_window(*, now: dt.datetime, tz: zoneinfo.ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    start, end = month_bounds(now.astimezone(tz).date())
    return _local_midnight(start, tz), _local_midnight(end, tz)


def allowance_window(*, period: str, now: dt.datetime, tz: zoneinfo.ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """The [start, end) allowance window containing ``now`` as aware datetimes."""
    if period == AllowancePeriod.DAY:
        today = now.astimezone(tz).date()
        return _local_midnight(today, tz), _local_midnight(today + dt.timedelta(days=1), tz)
    # Monthly and contract plans both run on the billing month.
    return billing_month_window(now=now, tz=tz)
