"""Plan reads: the catalogue, what a tenant may change to, and a pending downgrade."""

from __future__ import annotations

from typing import TYPE_CHECKING

from billing.choices import PlanChangeKind
from billing.models import Plan, PlanChange

if TYPE_CHECKING:
    from billing.models import Tenant


def plan_list() -> list[Plan]:
    """Every plan, in catalogue order."""
    return list(Plan.objects.order_by("sort_order", "name"))


def plan_list_offered(*, tenant: Tenant) -> list[Plan]:
    """The plans the plan page lists for ``tenant``: the public ones and its current one, in catalogue order."""
    plans = set(Plan.objects.filter(is_public=True) | Plan.objects.filter(pk=tenant.plan_id))
    return sorted(plans, key=lambda p: (p.sort_order, p.monthly_price))


def plan_change_pending(*, tenant: Tenant) -> PlanChange | None:
    """The downgrade scheduled for the end of the month, if any (not yet applied, not cancelled)."""
    return (
        PlanChange.objects.select_related("to_plan")
        .filter(tenant_id=tenant.pk, kind=PlanChangeKind.DOWNGRADE, applied_at__isnull=True, cancelled_at__isnull=True)
        .first()
    )
