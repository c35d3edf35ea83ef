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
    economics_by_node,
    economics_by_period,
    economics_by_tenant,
    plan_change_pending,
    plan_list,
    plan_list_offered,
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
    tenants = tenant_list()
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


def staff_plan_counts(*, tenants: list[Tenant]) -> dict[str, int]:
    """Tenants per plan name, every plan listed (in catalogue order) even when it has none."""
    counts = {p.name: 0 for p in plan_list()}
    for t in tenants:
        counts[t.plan.name] = counts.get(t.plan.name, 0) + 1
    return counts
