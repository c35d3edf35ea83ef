"""Usage per day, in the tenant's time zone: the one definition the API and the portal share.

A day is a calendar day where the tenant lives (the day its Free allowance resets), and
usage is what was charged: settled reservations, counted on the day they settled (the day
the job finished), as invoices count them.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from django.db.models import Count, F, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from billing.choices import LedgerKind, ReservationStatus
from billing.models import LedgerEntry, Plan, PlanChange, TokenReservation
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


def tokens_charged_by_plan() -> dict[str, int]:
    """Tokens charged since the start (the ledger's settlements), by the code of the plan the
    tenant was on when each was charged; every plan listed, in catalogue order (``/metrics``).

    Three queries whatever the number of tenants: the tenants that never changed plan are
    summed by their plan in one join; only the settlements of tenants with an applied plan
    change look up the plan of their time (so a plan change moves no history from one plan to
    another, and the counters only grow); then the catalogue.
    """
    settled = LedgerEntry.objects.filter(kind=LedgerKind.SETTLE).order_by()
    changed = PlanChange.objects.filter(applied_at__isnull=False).values("tenant_id")
    steady = settled.exclude(tenant_id__in=changed).values(plan=F("tenant__plan_id")).annotate(tokens=Sum("held_delta"))
    applied = PlanChange.objects.filter(tenant_id=OuterRef("tenant_id"), applied_at__isnull=False)
    plan_then = Coalesce(
        Subquery(
            applied.filter(applied_at__lte=OuterRef("created_at")).order_by("-applied_at").values("to_plan_id")[:1]
        ),
        Subquery(
            applied.filter(applied_at__gt=OuterRef("created_at")).order_by("applied_at").values("from_plan_id")[:1]
        ),
    )
    moved = (
        settled.filter(tenant_id__in=changed).annotate(plan=plan_then).values("plan").annotate(tokens=Sum("held_delta"))
    )
    charged: dict[int, int] = {}
    for row in [*steady, *moved]:
        charged[row["plan"]] = charged.get(row["plan"], 0) - int(row["tokens"] or 0)  # settling: held_delta = -tokens
    return {plan.code: charged.get(plan.pk, 0) for plan in Plan.objects.order_by("sort_order", "name")}
