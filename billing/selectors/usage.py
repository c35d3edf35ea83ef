"""Usage per day, in the tenant's time zone: the one definition the API and the portal share.

A day is a calendar day where the tenant lives (the day its Free allowance resets), and
usage is what was charged: settled reservations, counted on the day they settled (the day
the job finished), as invoices count them.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from django.db.models import Count, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from billing.choices import ReservationStatus
from billing.models import TokenReservation
from billing.periods import days_window_start

if TYPE_CHECKING:
    from billing.models import Tenant

USAGE_DAYS_MAX = 366


def _days_clamped(days) -> int:
    return max(1, min(int(days), USAGE_DAYS_MAX))


def usage_since(*, tenant: Tenant, days: int = 30, now: dt.datetime | None = None) -> dt.datetime:
    """Local midnight (tenant's time zone) that starts the last ``days`` days, today included."""
    return days_window_start(days=_days_clamped(days), now=now or timezone.now(), tz=tenant.tz)


def usage_by_day(*, tenant: Tenant, days: int = 30, now: dt.datetime | None = None) -> list[dict]:
    """Settled tokens, jobs and GPU-seconds per local day for the last ``days`` days, oldest
    first and zero-filled: ``[{"day": date, "tokens": int, "jobs": int, "gpu_seconds": float}]``."""
    days = _days_clamped(days)
    tz = tenant.tz
    start = usage_since(tenant=tenant, days=days, now=now)
    first = start.date()
    rows = (
        TokenReservation.objects.filter(tenant_id=tenant.pk, status=ReservationStatus.SETTLED, settled_at__gte=start)
        .annotate(day=TruncDate("settled_at", tzinfo=tz))
        .values("day")
        .annotate(tokens=Sum("tokens"), jobs=Count("id"), gpu_seconds=Sum("gpu_seconds"))
        .order_by()
    )
    by_day = {r["day"]: r for r in rows}
    out = []
    for i in range(days):
        day = first + dt.timedelta(days=i)
        r = by_day.get(day, {})
        out.append(
            {
                "day": day,
                "tokens": int(r.get("tokens") or 0),
                "jobs": int(r.get("jobs") or 0),
                "gpu_seconds": float(r.get("gpu_seconds") or 0.0),
            }
        )
    return out
