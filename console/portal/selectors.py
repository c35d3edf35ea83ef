"""Portal reads: which tenant a user acts for, and the data its pages show."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal
from functools import lru_cache

from django.core.cache import cache
from django.db.models import Count, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from billing.models import Membership, Tenant
from billing.selectors import economics_by_node, economics_by_period, economics_by_tenant
from inference.text.instruction import parse_instruction

LANGUAGE_NAMES = {"zh": "Mandarin", "yue": "Cantonese", "en": "English", "ja": "Japanese", "ko": "Korean"}
FEATURE_NAMES = {"plain": "No instruction", "dialect": "Dialect", "emotion": "Emotion", "style": "Style"}


# The session key under which the portal remembers the selected tenant; the jobs API reads
# the same key (inference.api.auth.SESSION_TENANT_KEY), so the playground acts for it too.
SESSION_TENANT_KEY = "tenant_id"


def membership_for_user(*, user, selected_tenant_id=None) -> Membership | None:
    """The membership the user acts through: the selected tenant's, else the oldest."""
    if not user.is_authenticated:
        return None
    memberships = Membership.objects.select_related("tenant", "tenant__plan").filter(user=user)
    if selected_tenant_id is not None:
        selected = memberships.filter(tenant_id=selected_tenant_id).first()
        if selected is not None:
            return selected
    return memberships.order_by("created_at", "id").first()


def memberships_for_user(*, user) -> list[Membership]:
    return list(Membership.objects.select_related("tenant").filter(user=user).order_by("created_at", "id"))


def tenant_members(*, tenant: Tenant) -> list[Membership]:
    return list(Membership.objects.select_related("user").filter(tenant=tenant).order_by("created_at"))


def voices_for_tenant(*, tenant: Tenant) -> list:
    """Presets then the tenant's own voices, as the API lists them."""
    from inference.selectors import voice_list_for_tenant

    return voice_list_for_tenant(tenant=tenant)


def jobs_recent(*, tenant: Tenant, limit: int = 10) -> list:
    from inference.selectors import job_list_for_tenant

    return list(job_list_for_tenant(tenant=tenant)[:limit])


@lru_cache(maxsize=4096)
def instruction_features(instruction: str) -> tuple[str, ...]:
    """Plan features an instruction uses ("plain" when none), as the API's parser sees it."""
    parsed = parse_instruction(instruction) if instruction else None
    features = tuple(sorted(parsed.required_features)) if parsed else ()
    return features or ("plain",)


def usage_breakdown(*, tenant: Tenant, days: int = 30, now: dt.datetime | None = None) -> dict:
    """Tokens of succeeded jobs per local day, per language and per plan feature (one query).

    Succeeded jobs are exactly the settled reservations, so these tokens are what was charged.
    """
    from inference.models import JobStatus, SynthesisJob

    now = now or timezone.now()
    tz = tenant.tz
    today = now.astimezone(tz).date()
    first = today - dt.timedelta(days=days - 1)
    since = dt.datetime.combine(first, dt.time.min, tzinfo=tz)
    rows = (
        SynthesisJob.objects.filter(tenant=tenant, status=JobStatus.SUCCEEDED, created_at__gte=since)
        .annotate(day=TruncDate("created_at", tzinfo=tz))
        .values("day", "language", "instruction")
        .annotate(tokens=Sum("tokens"), jobs=Count("id"))
    )
    per_day: dict[dt.date, int] = defaultdict(int)
    per_language: dict[str, int] = defaultdict(int)
    per_feature: dict[str, int] = defaultdict(int)
    total_jobs = 0
    for row in rows:
        tokens = int(row["tokens"] or 0)
        per_day[row["day"]] += tokens
        per_language[row["language"]] += tokens
        for feature in instruction_features(row["instruction"] or ""):
            per_feature[feature] += tokens
        total_jobs += row["jobs"]
    day_list = [first + dt.timedelta(days=i) for i in range(days)]
    return {
        "days": [d.isoformat() for d in day_list],
        "tokens_per_day": [per_day.get(d, 0) for d in day_list],
        "by_language": {LANGUAGE_NAMES.get(k, k): v for k, v in sorted(per_language.items(), key=lambda kv: -kv[1])},
        "by_feature": {FEATURE_NAMES.get(k, k): v for k, v in sorted(per_feature.items(), key=lambda kv: -kv[1])},
        "total_tokens": sum(per_day.values()),
        "total_jobs": total_jobs,
    }


def plan_options(*, tenant: Tenant, now: dt.datetime | None = None) -> dict:
    """What changing to each public plan would do, in words, for the plan page.

    Mirrors billing.services.plan_change: a dearer plan applies at once with the price
    difference prorated to the end of the billing month; a cheaper one at the month's end.
    """
    from decimal import ROUND_HALF_UP

    from billing.models import Plan, PlanChange, PlanChangeKind
    from billing.periods import billing_month_window

    now = now or timezone.now()
    current = tenant.plan
    month_start, month_end = billing_month_window(now=now, tz=tenant.tz)
    fraction = Decimal((month_end - now).total_seconds()) / Decimal((month_end - month_start).total_seconds())
    pending = (
        PlanChange.objects.select_related("to_plan")
        .filter(tenant=tenant, kind=PlanChangeKind.DOWNGRADE, applied_at__isnull=True, cancelled_at__isnull=True)
        .first()
    )
    plans = list(Plan.objects.filter(is_public=True) | Plan.objects.filter(pk=current.pk))
    options = []
    for plan in sorted(set(plans), key=lambda p: (p.sort_order, p.monthly_price)):
        is_upgrade = (plan.monthly_price, plan.allowance_tokens) > (current.monthly_price, current.allowance_tokens)
        option = {"plan": plan, "is_current": plan.pk == current.pk, "is_upgrade": is_upgrade, "contact_sales": False}
        if plan.dedicated_nodes and not option["is_current"]:
            option["contact_sales"] = True
        elif is_upgrade:
            option["prorated_amount"] = ((plan.monthly_price - current.monthly_price) * fraction).quantize(
                Decimal("0.01"), ROUND_HALF_UP
            )
        options.append(option)
    return {"options": options, "pending": pending, "month_end": month_end, "current": current}


def topups_for_tenant(*, tenant: Tenant, now: dt.datetime | None = None) -> dict:
    from billing.models import TopUp, TopUpPack

    now = now or timezone.now()
    return {
        "packs": list(TopUpPack.objects.filter(is_active=True).order_by("tokens")),
        "topups": list(TopUp.objects.filter(tenant=tenant).order_by("-purchased_at")[:20]),
        "now": now,
    }


def invoices_for_tenant(*, tenant: Tenant) -> list:
    from billing.models import Invoice

    return list(Invoice.objects.filter(tenant=tenant).prefetch_related("lines").order_by("-period_start"))


STAFF_ECONOMICS_TTL_S = 30


def staff_economics(*, period_start: dt.date, months: int = 6, fresh: bool = False) -> dict:
    """Revenue, GPU cost and margin per tenant, node and month (billing's selectors), cached briefly.

    Billing computes these from invoices, line items and settled reservations tenant by
    tenant; staff look at trends, so figures up to half a minute old are fine ("recompute
    now" bypasses the cache). Billing projects no subscription into months that ended
    before a tenant signed up.
    """
    key = f"portal:staff-economics:{period_start.isoformat()}:{months}"
    data = None if fresh else cache.get(key)
    if data is not None:
        return data
    tenants = list(Tenant.objects.select_related("plan").order_by("name"))
    by_tenant = economics_by_tenant(period_start=period_start, tenants=tenants)
    by_period = economics_by_period(
        months=months, now=dt.datetime.combine(period_start, dt.time(12), tzinfo=dt.UTC), tenants=tenants
    )
    data = {
        "tenants": tenants,
        "by_tenant": by_tenant,
        "by_node": economics_by_node(period_start=period_start),
        "by_period": by_period,
        "computed_at": timezone.now(),
    }
    cache.set(key, data, STAFF_ECONOMICS_TTL_S)
    return data
