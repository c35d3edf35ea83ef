"""billing.pricing: who may pick a plan themselves, what an upgrade is, and proration."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from billing.models import Plan
from billing.pricing import (
    plan_is_upgrade,
    plan_self_service_allowed,
    proration_amount,
    proration_fraction,
    proration_tokens,
)


def test_self_service_needs_a_public_plan_without_dedicated_nodes(db):
    plans = {p.code: p for p in Plan.objects.all()}
    assert plan_self_service_allowed(plan=plans["free"]) and plan_self_service_allowed(plan=plans["pro"])
    assert not plan_self_service_allowed(plan=plans["enterprise"])
    # A public plan that needs dedicated GPU nodes is still arranged by contract.
    dedicated = Plan(code="x", name="X", is_public=True, dedicated_nodes=True)
    assert not plan_self_service_allowed(plan=dedicated)


def test_upgrade_and_proration(db):
    free, pro = Plan.objects.get(code="free"), Plan.objects.get(code="pro")
    assert plan_is_upgrade(old_plan=free, new_plan=pro) and not plan_is_upgrade(old_plan=pro, new_plan=free)
    start = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
    end = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    fraction = proration_fraction(now=dt.datetime(2026, 4, 16, tzinfo=dt.UTC), month_start=start, month_end=end)
    assert fraction == Decimal(15) / Decimal(30)
    assert proration_amount(old_plan=free, new_plan=pro, fraction=fraction) == (pro.monthly_price / 2).quantize(
        Decimal("0.01")
    )
    # Daily -> monthly: the monthly allowance for the rest of the month.
    assert proration_tokens(old_plan=free, new_plan=pro, fraction=fraction, allowance_remaining=123) == 50_000
