"""Portal reads: the data its pages show, from billing's and inference's selectors.

No models here: tenants, plans, quotas and invoices come from ``billing.selectors``, voices
and jobs from ``inference.selectors``; the rules (self-service, proration) from
``billing.pricing``. Which tenant a user acts for is ``billing.selectors.membership_for_user``.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from functools import lru_cache
from typing import TYPE_CHECKING

from django.core.cache import cache
from django.db.models import Count, Sum
from django.utils import timezone

from billing.periods import billing_month_window
from billing.pricing import plan_is_upgrade, plan_self_service_allowed, proration_amount, proration_fraction
from billing.selectors import (
    economics_overview,
    plan_change_pending,
    plan_list_offered,
    tenant_count_by_plan,
    tenant_list,
    topup_list_for_tenant,
    topup_pack_list_active,
    usage_by_day,
    usage_since,
)
from inference.choices import JobStatus
from inference.selectors import job_list_for_tenant, voice_list_for_tenant
from inference.text.instruction import parse_instruction

if TYPE_CHECKING:
    from billing.models import Tenant

LANGUAGE_NAMES = {"zh": "Mandarin", "yue": "Cantonese", "en": "English", "ja": "Japanese", "ko": "Korean"}
FEATURE_NAMES = {"plain": "No instruction", "dialect": "Dialect", "emotion": "Emotion", "style": "Style"}


def voices_for_tenant(*, tenant: Tenant) -> list:
    """Presets then the tenant's own voices, as the API lists them."""
    return voice_list_for_tenant(tenant=tenant)


def jobs_recent(*, tenant: Tenant, limit: int = 10) -> list:
    return list(job_list_for_tenant(tenant=tenant)[:limit])


@lru_cache(maxsize=4096)
def instruction_features(instruction: str) -> tuple[str, ...]:
    """Plan features an instruction uses ("plain" when none), as the API's parser sees it."""
    parsed = parse_instruction(instruction) if instruction else None
    features = tuple(sorted(parsed.required_features)) if parsed else ()
    return features or ("plain",)


def usage_breakdown(*, tenant: Tenant, days: int = 30, now: dt.datetime | None = None) -> dict:
    """Tokens charged per local day (billing's usage_by_day, as the API counts them), and the
    same window's tokens per language and per plan feature (from the jobs that succeeded in it).

    Succeeded jobs are exactly the settled reservations, so these tokens are what was charged.
    """
    now = now or timezone.now()
    per_day = usage_by_day(tenant=tenant, days=days, now=now)
    since = usage_since(tenant=tenant, days=days, now=now)
    rows = (
        job_list_for_tenant(tenant=tenant, status=JobStatus.SUCCEEDED)
        .filter(finished_at__gte=since)
        .order_by()
        .values("language", "instruction")
        .annotate(tokens=Sum("tokens"), jobs=Count("id"))
    )
    per_language: dict[str, int] = defaultdict(int)
    per_feature: dict[str, int] = defaultdict(int)
    for row in rows:
        tokens = int(row["tokens"] or 0)
        per_language[row["language"]] += tokens
        for feature in instruction_features(row["instruction"] or ""):
            per_feature[feature] += tokens
    return {
        "days": [d["day"].isoformat() for d in per_day],
        "tokens_per_day": [d["tokens"] for d in per_day],
        "by_language": {LANGUAGE_NAMES.get(k, k): v for k, v in sorted(per_language.items(), key=lambda kv: -kv[1])},
        "by_feature": {FEATURE_NAMES.get(k, k): v for k, v in sorted(per_feature.items(), key=lambda kv: -kv[1])},
        "total_tokens": sum(d["tokens"] for d in per_day),
        "total_jobs": sum(d["jobs"] for d in per_day),
    }


def plan_options(*, tenant: Tenant, now: dt.datetime | None = None) -> dict:
    """What changing to each offered plan would do, for the plan page.

    The rules are billing.pricing's, as billing.services.plan_change applies them: a plan the
    customer may not pick themselves says "contact sales"; a dearer plan applies at once with
    the price difference prorated to the end of the billing month; a cheaper one at its end.
    """
    now = now or timezone.now()
    current = tenant.plan
    month_start, month_end = billing_month_window(now=now, tz=tenant.tz)
    fraction = proration_fraction(now=now, month_start=month_start, month_end=month_end)
    options = []
    for plan in plan_list_offered(tenant=tenant):
        is_current = plan.pk == current.pk
        is_upgrade = plan_is_upgrade(old_plan=current, new_plan=plan)
        option = {"plan": plan, "is_current": is_current, "is_upgrade": is_upgrade, "contact_sales": False}
        if not is_current and not plan_self_service_allowed(plan=plan):
            option["contact_sales"] = True
        elif is_upgrade:
            option["prorated_amount"] = proration_amount(old_plan=current, new_plan=plan, fraction=fraction)
        options.append(option)
    return {
        "options": options,
        "pending": plan_change_pending(tenant=tenant),
        "month_end": month_end,
        "current": current,
    }


def topups_for_tenant(*, tenant: Tenant, now: dt.datetime | None = None) -> dict:
    return {
        "packs": topup_pack_list_active(),
        "topups": topup_list_for_tenant(tenant=tenant, limit=20),
        "now": now or timezone.now(),
    }


# Beat recomputes the figures every minute (console.portal.tasks); a page served between two
# runs reads them from the cache, one without beat (embedded) computes them on a miss.
STAFF_ECONOMICS_TTL_S = 150
# The overview lists (and charts) the tenants with the most revenue this month; the admin
# lists them all. At 10,000 tenants a full table would be most of the page's weight.
STAFF_TENANT_ROWS = 50


def staff_economics(*, period_start: dt.date, months: int = 6, fresh: bool = False) -> dict:
    """Revenue, GPU cost and margin per tenant, node and month (billing's economics_overview),
    cached briefly.

    Billing aggregates these in SQL (its query count depends on the tenants' time zones, not
    on how many tenants or jobs there are); staff look at trends, so figures a minute or two
    old are fine ("recompute now" bypasses the cache). Only what the page shows is
    cached: the top tenants, the nodes, the months and the counts.
    """
    key = f"portal:staff-economics:{period_start.isoformat()}:{months}"
    data = None if fresh else cache.get(key)
    if data is not None:
        return data
    tenants = tenant_list()
    overview = economics_overview(period_start=period_start, months=months, tenants=tenants)
    plans = {t.pk: t.plan.name for t in tenants}
    top = overview.by_tenant[:STAFF_TENANT_ROWS]
    data = {
        "tenant_count": len(tenants),
        "plan_counts": tenant_count_by_plan(),
        "rows": [{"e": e, "tenant_id": int(e.key), "plan": plans.get(int(e.key), "")} for e in top],
        "by_node": overview.by_node,
        "by_period": overview.by_period,
        "computed_at": timezone.now(),
    }
    cache.set(key, data, STAFF_ECONOMICS_TTL_S)
    return data
