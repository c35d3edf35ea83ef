"""Celery tasks are thin: each calls one service."""

import datetime as dt

from django.conf import settings
from django.utils import timezone

from billing.models import LedgerEntry, LedgerKind, TopUp
from billing.services import topup_grant
from billing.tasks import expire_topups


def test_expire_topups_task_writes_expiry_rows(make_tenant):
    tenant = make_tenant("pro")
    topup = topup_grant(tenant=tenant, tokens=300, expires_at=timezone.now() + dt.timedelta(seconds=1))
    TopUp.objects.filter(pk=topup.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert expire_topups() == 300
    assert expire_topups() == 0
    assert LedgerEntry.objects.get(topup=topup, kind=LedgerKind.EXPIRY).available_delta == -300
    assert settings.CELERY_BEAT_SCHEDULE["billing-expire-topups"]["task"] == "billing.expire_topups"
