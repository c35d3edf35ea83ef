"""Plans: look-up, the feature gate, and plan changes (upgrade now, prorated; downgrade at month end).

Who may pick a plan themselves and how an upgrade is prorated are ``billing.pricing``'s rules.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from billing.choices import PlanChangeKind
from billing.errors import FeatureNotInPlan, InvalidPlanChange, UnknownPlan
from billing.models import LedgerEntry, Plan, PlanChange
from billing.periods import allowance_window, billing_month_window
from billing.pricing import (
    plan_is_upgrade,
    plan_self_service_allowed,
    proration_amount,
    proration_fraction,
    proration_tokens,
)
from billing.services._accounts import account_lock, tenant_active_check, window_close, window_ensure, window_open
from console.errors import VoxfleetError

if TYPE_CHECKING:
    from billing.models import Tenant


def plan_get(*, code: str) -> Plan:
    try:
        return Plan.objects.get(code=code)
    except Plan.DoesNotExist:
        raise UnknownPlan(f"There is no plan {code!r}.") from None


PLAN_FEATURES = ("dialect", "emotion", "style", "topup", "dedicated_nodes")


def plan_feature_check(*, tenant: Tenant, language: str, features: set[str]) -> None:
    """Raise FeatureNotInPlan unless the tenant's plan allows ``language`` and every feature."""
    plan = tenant.plan
    if language and not plan.allows_language(language):
        raise FeatureNotInPlan(
            f"Language {language!r} is not included in the {plan.name} plan; upgrade to use it.",
            feature=f"language:{language}",
            plan=plan.code,
        )
    for feature in sorted(features or ()):
        if feature not in PLAN_FEATURES:
            raise VoxfleetError(f"Unknown plan feature {feature!r}.", code="unknown_feature")
        if not plan.allows_feature(feature):
            raise FeatureNotInPlan(
                f"{feature.replace('_', ' ').capitalize()} instructions are not included in the {plan.name} plan; "
                "upgrade to use them."
                if feature in ("dialect", "emotion", "style")
                else f"{feature.replace('_', ' ').capitalize()} is not included in the {plan.name} plan.",
                feature=feature,
                plan=plan.code,
            )


def plan_change(
    *, tenant: Tenant, plan_code: str, now: dt.datetime | None = None, by_staff: bool = False
) -> PlanChange:
    """Upgrade at once (prorated charge and allowance for the rest of the month) or schedule a
    downgrade for the end of the billing month. Asking for the current plan cancels a pending downgrade.
    Plans a customer may not pick themselves (billing.pricing: Enterprise, a contract) are
    only assigned by staff; a suspended tenant's plan is changed by staff only."""
    new_plan = plan_get(code=plan_code)
    if not by_staff:
        tenant_active_check(tenant.pk, action="change its plan")
    if not by_staff and new_plan.pk != tenant.plan_id and not plan_self_service_allowed(plan=new_plan):
        raise InvalidPlanChange(f"The {new_plan.name} plan is arranged by contract; contact sales to move to it.")
    now = now or timezone.now()
    with transaction.atomic():
        account = account_lock(tenant.pk)
        window_ensure(account, now=now)
        tenant = account.tenant
        old_plan = tenant.plan
        pending = PlanChange.objects.filter(
            tenant_id=tenant.pk, kind=PlanChangeKind.DOWNGRADE, applied_at__isnull=True, cancelled_at__isnull=True
        )
        if new_plan.pk == old_plan.pk:
            change = pending.first()
            if change is None:
                raise InvalidPlanChange(f"{tenant.name} is already on the {old_plan.name} plan.")
            pending.update(cancelled_at=now)
            account.pending_plan, account.pending_plan_at = None, None
            account.save(update_fields=["pending_plan", "pending_plan_at"])
            change.refresh_from_db()
            return change
        month_start, month_end = billing_month_window(now=now, tz=tenant.tz)
        if not plan_is_upgrade(old_plan=old_plan, new_plan=new_plan):
            pending.update(cancelled_at=now)
            account.pending_plan, account.pending_plan_at = new_plan, month_end
            account.save(update_fields=["pending_plan", "pending_plan_at"])
            return PlanChange.objects.create(
                tenant=tenant,
                from_plan=old_plan,
                to_plan=new_plan,
                kind=PlanChangeKind.DOWNGRADE,
                requested_at=now,
                effective_at=month_end,
                currency=new_plan.currency,
            )
        if new_plan.currency != old_plan.currency and old_plan.monthly_price:
            raise InvalidPlanChange("Changing to a plan billed in another currency needs staff help.")
        fraction = proration_fraction(now=now, month_start=month_start, month_end=month_end)
        amount = proration_amount(old_plan=old_plan, new_plan=new_plan, fraction=fraction)
        tokens = proration_tokens(
            old_plan=old_plan, new_plan=new_plan, fraction=fraction, allowance_remaining=account.allowance_remaining
        )
        start, end = allowance_window(period=new_plan.allowance_period, now=now, tz=tenant.tz)
        pending.update(cancelled_at=now)
        change = PlanChange.objects.create(
            tenant=tenant,
            from_plan=old_plan,
            to_plan=new_plan,
            kind=PlanChangeKind.UPGRADE,
            requested_at=now,
            effective_at=now,
            applied_at=now,
            prorated_amount=amount,
            currency=new_plan.currency,
            prorated_tokens=tokens,
        )
        rows = window_close(account, now=now)
        grant = window_open(account, start=start, end=end, tokens=tokens, now=now, note=f"upgrade to {new_plan.code}")
        grant.idempotency_key = f"upgrade-grant:{change.pk}"
        LedgerEntry.objects.bulk_create([*rows, grant])
        account.pending_plan, account.pending_plan_at = None, None
        account.save()
        tenant.plan = new_plan
        tenant.save(update_fields=["plan"])
        return change
