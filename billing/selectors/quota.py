"""Quota reads: what a tenant may still spend and when its allowance resets."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db.models import Sum
from django.utils import timezone

from billing.choices import ReservationStatus
from billing.models import BillingAccount, TokenReservation, TopUp
from billing.periods import allowance_window

if TYPE_CHECKING:
    from billing.models import Tenant


@dataclass(frozen=True)
class QuotaStatus:
    """What a tenant may still spend right now, and when its allowance resets."""

    plan_code: str
    allowance_tokens: int
    allowance_remaining: int
    topup_remaining: int
    remaining: int
    reserved: int
    used: int
    period_start: dt.datetime
    resets_at: dt.datetime
    overage_allowed: bool


def quota_get(*, tenant: Tenant, now: dt.datetime | None = None) -> QuotaStatus:
    """The tenant's balance; a window that has lapsed reads as the fresh one it will lazily open."""
    now = now or timezone.now()
    plan = tenant.plan
    account = BillingAccount.objects.filter(tenant_id=tenant.pk).first()
    if account is None or account.window_end is None or now >= account.window_end:
        start, end = allowance_window(period=plan.allowance_period, now=now, tz=tenant.tz)
        allowance_tokens = allowance_remaining = int(plan.allowance_tokens)
    else:
        start, end = account.window_start, account.window_end
        allowance_tokens, allowance_remaining = int(account.allowance_tokens), int(account.allowance_remaining)
    topup_remaining = (
        TopUp.objects.filter(tenant_id=tenant.pk, expires_at__gt=now, remaining__gt=0).aggregate(s=Sum("remaining"))[
            "s"
        ]
        or 0
    )
    reserved = (
        TokenReservation.objects.filter(tenant_id=tenant.pk, status=ReservationStatus.OPEN).aggregate(s=Sum("tokens"))[
            "s"
        ]
        or 0
    )
    return QuotaStatus(
        plan_code=plan.code,
        allowance_tokens=allowance_tokens,
        allowance_remaining=allowance_remaining,
        topup_remaining=int(topup_remaining),
        remaining=allowance_remaining + int(topup_remaining),
        reserved=int(reserved),
        used=max(0, allowance_tokens - allowance_remaining),
        period_start=start,
        resets_at=end,
        overage_allowed=plan.overage_price_per_1k is not None,
    )
