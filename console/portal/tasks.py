"""Celery tasks of the portal: thin, each calls one selector or service."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone


@shared_task(name="portal.staff_economics_warm")
def staff_economics_warm() -> str:
    """Recompute the staff overview's figures into the cache (beat, every minute), so a staff
    page never waits for them: at 10,000 tenants and millions of jobs they take seconds."""
    from console.portal.selectors import staff_economics

    period_start = timezone.localdate().replace(day=1)
    data = staff_economics(period_start=period_start, months=6, fresh=True)
    return data["computed_at"].isoformat()
