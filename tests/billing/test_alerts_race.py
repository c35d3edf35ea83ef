"""Usage alerts fire exactly once per threshold and period under a 32-client race (PostgreSQL)."""

import datetime as dt
import threading

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from billing.models import BillingAccount, UsageAlert, WebhookDelivery
from billing.services import alerts as alerts_module
from billing.services import reservation_create, usage_alert_fire, webhook_endpoint_create

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
CLIENTS = 32


def _skip_unless_postgres():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: concurrent transactions and row locks (SQLite serialises everything)")


def _race(target):
    barrier = threading.Barrier(CLIENTS)
    errors, results = [], []
    lock = threading.Lock()

    def worker(i):
        from django.db import connection as conn

        try:
            barrier.wait()
            out = target(i)
            with lock:
                results.append(out)
        except Exception as exc:
            with lock:
                errors.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results, errors


def test_32_clients_crossing_the_thresholds_fire_each_alert_once(make_tenant, monkeypatch):
    _skip_unless_postgres()
    sent = []
    monkeypatch.setattr(alerts_module, "_enqueue", lambda name, oid, countdown=0: sent.append((name, oid)))
    tenant = make_tenant("pro")  # 100,000 tokens this month
    webhook_endpoint_create(tenant=tenant, url="https://hooks.example.com/a")
    webhook_endpoint_create(tenant=tenant, url="https://hooks.example.com/b")
    # 32 x 3,125 = 100,000: every client reserves at once, usage passes 80 % and reaches 100 %.
    results, errors = _race(lambda i: reservation_create(tenant=tenant, tokens=3_125, reference=f"c{i}").pk)
    assert errors == [] and len(results) == CLIENTS
    assert BillingAccount.objects.get(tenant=tenant).allowance_remaining == 0
    alerts = sorted(UsageAlert.objects.filter(tenant=tenant).values_list("kind", "threshold"))
    assert alerts == [("allowance_percent", 80), ("allowance_percent", 100)]
    assert WebhookDelivery.objects.filter(alert__tenant=tenant).count() == 2 * 2  # one per alert and endpoint
    assert sorted(name for name, _ in sent).count("billing.webhook_deliver") == 4
    assert [name for name, _ in sent].count("billing.usage_alert_email") == 2
    call_command("billing_reconcile")


def test_32_clients_firing_the_same_alert_record_it_once(make_tenant, monkeypatch):
    _skip_unless_postgres()
    monkeypatch.setattr(alerts_module, "_enqueue", lambda *a, **k: None)
    tenant = make_tenant("pro")
    webhook_endpoint_create(tenant=tenant, url="https://hooks.example.com/a")
    start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0, tzinfo=dt.UTC)
    results, errors = _race(
        lambda i: usage_alert_fire(
            tenant_id=tenant.pk,
            kind="allowance_percent",
            threshold=80,
            period_start=start,
            allowance_tokens=100_000,
            value=80_000 + i,
        )
    )
    assert errors == []
    assert len([r for r in results if r is not None]) == 1
    assert UsageAlert.objects.filter(tenant=tenant).count() == 1
    assert WebhookDelivery.objects.filter(alert__tenant=tenant).count() == 1
