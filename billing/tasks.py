"""Celery tasks: thin wrappers that call one service."""

from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.utils import timezone

from billing.models import Tenant
from billing.services import billing_period_close, topups_expire_due


@shared_task(name="billing.close_previous_period")
def close_previous_period() -> dict:
    """Beat runs this hourly on the 1st and 2nd: each tenant's month closes once it has ended locally."""
    first = (timezone.now().date().replace(day=1) - dt.timedelta(days=1)).replace(day=1)
    return billing_period_close(period_start=first)


@shared_task(name="billing.expire_topups")
def expire_topups() -> int:
    """Write off lapsed top-ups through ledger rows (they are also expired lazily on spend)."""
    return sum(
        topups_expire_due(tenant=t)
        for t in Tenant.objects.filter(topups__remaining__gt=0, topups__expires_at__lte=timezone.now()).distinct()
    )
