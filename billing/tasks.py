"""Celery tasks: thin wrappers that call one service."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from billing.periods import month_previous
from billing.services import billing_period_close, topups_expire_lapsed


@shared_task(name="billing.close_previous_period")
def close_previous_period() -> dict:
    """Close last month's invoices. Beat runs this every hour (CELERY_BEAT_SCHEDULE): each
    tenant's month closes on the first run after it has ended in the tenant's time zone, and
    later runs skip tenants already closed."""
    return billing_period_close(period_start=month_previous(timezone.now().date()))


@shared_task(name="billing.expire_topups")
def expire_topups() -> int:
    """Write off lapsed top-ups through ledger rows (they are also expired lazily on spend)."""
    return topups_expire_lapsed()
