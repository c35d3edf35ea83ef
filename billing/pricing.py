"""Pricing rules: who may pick a plan themselves, what is an upgrade, and proration.

Pure functions over plans and instants (no queries), so the plan-change service and the
portal's plan page apply one rule. Proration money is rounded once, here: half-up to cents.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

from billing.choices import AllowancePeriod

if TYPE_CHECKING:
    from billing.models import Plan

CENT = Decimal("0.01")
_MONTHLY = (AllowancePeriod.MONTH, AllowancePeriod.CONTRACT)


def plan_self_service_allowed(*, plan: Plan) -> bool:
    """Whether a customer may move to ``plan`` without staff.

    Only plans offered publicly and running on the shared fleet: a plan kept off the public
    list, or one that needs dedicated GPU nodes (provisioned per tenant), is arranged by
    contract ("contact sales") and assigned by staff.
    """
    return bool(plan.is_public) and not plan.dedicated_nodes


def plan_is_upgrade(*, old_plan: Plan, new_plan: Plan) -> bool:
    """A dearer (or, at the same price, larger) plan applies at once; anything else at month end."""
    return (new_plan.monthly_price, new_plan.allowance_tokens) > (old_plan.monthly_price, old_plan.allowance_tokens)


def proration_fraction(*, now: dt.datetime, month_start: dt.datetime, month_end: dt.datetime) -> Decimal:
    """The share of the billing month [month_start, month_end) still ahead at ``now``."""
    return Decimal((month_end - now).total_seconds()) / Decimal((month_end - month_start).total_seconds())


def proration_amount(*, old_plan: Plan, new_plan: Plan, fraction: Decimal) -> Decimal:
    """What an upgrade charges now: the price difference for the rest of the month, in cents."""
    return ((new_plan.monthly_price - old_plan.monthly_price) * fraction).quantize(CENT, ROUND_HALF_UP)


def proration_tokens(*, old_plan: Plan, new_plan: Plan, fraction: Decimal, allowance_remaining: int) -> int:
    """The allowance an upgrade opens with for the rest of the current window.

    Monthly to monthly: what is left plus the extra allowance for the rest of the month;
    daily to monthly: the monthly allowance for the rest of the month; to a daily plan: a
    full day's allowance.
    """
    if new_plan.allowance_period in _MONTHLY and old_plan.allowance_period in _MONTHLY:
        extra = max(0, new_plan.allowance_tokens - old_plan.allowance_tokens)
        return allowance_remaining + int(extra * fraction)
    if new_plan.allowance_period in _MONTHLY:
        return int(new_plan.allowance_tokens * fraction)
    return int(new_plan.allowance_tokens)
