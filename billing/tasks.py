"""Celery tasks: thin wrappers that call one service."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from billing.periods import month_previous
from billing.services import (
    billing_period_close,
    topups_expire_lapsed,
    usage_alert_email_send,
    webhook_deliveries_retry_due,
    webhook_delivery_attempt,
)


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


@shared_task(name="billing.webhook_deliver")
def webhook_deliver(delivery_id: int) -> None:
    """Try one webhook delivery; on failure it comes back after the service's backoff."""
    delay = webhook_delivery_attempt(delivery_id=delivery_id)
    if delay is not None:
        webhook_deliver.apply_async(args=[delivery_id], countdown=delay)


@shared_task(name="billing.usage_alert_email")
def usage_alert_email(alert_id: int) -> bool:
    return usage_alert_email_send(alert_id=alert_id)


@shared_task(name="billing.webhook_retry_due")
def webhook_retry_due() -> int:
    """Re-enqueue deliveries whose retry is due but whose task was lost (worker restart)."""
    return webhook_deliveries_retry_due()
