"""Quota windows and billing months, computed in the tenant's time zone.

Free plans reset daily at 00:00 local time; monthly and contract plans reset on the first
of the local calendar month, which is also the billing period that invoices cover.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from billing.models import AllowancePeriod


def _local_midnight(day: dt.date, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=tz)


def month_bounds(day: dt.date) -> tuple[dt.date, dt.date]:
    """First day of ``day``'s month and first day of the next month (exclusive end)."""
    start = day.replace(day=1)
    end = (start + dt.timedelta(days=32)).replace(day=1)
    return start, end


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
