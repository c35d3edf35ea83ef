"""Reservations under real concurrency (PostgreSQL row locks): never below zero, exactly N succeed."""

import threading

import pytest
from django.core.management import call_command
from django.db import connection

from billing.errors import InsufficientQuota
from billing.models import BillingAccount, ReservationStatus, TokenReservation
from billing.selectors import quota_get
from billing.services import reservation_create, reservation_release, reservation_settle

# serialized_rollback: the flush after each transactional test would otherwise drop the migrated plans.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

THREADS = 40


def _skip_unless_postgres():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL row locks (SELECT ... FOR UPDATE); SQLite serialises the whole database")


def _run_threads(target, n):
    barrier = threading.Barrier(n)
    outcomes = []
    lock = threading.Lock()

    def worker(i):
        from django.db import connection as conn

        try:
            barrier.wait()
            result = target(i)
            with lock:
                outcomes.append(("ok", result))
        except InsufficientQuota:
            with lock:
                outcomes.append(("refused", None))
        except Exception as exc:  # surfaced by the assertions below
            with lock:
                outcomes.append(("error", repr(exc)))
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return outcomes


def test_concurrent_reservations_fit_exactly(make_tenant):
    _skip_unless_postgres()
    tenant = make_tenant("free")  # 500 tokens today
    outcomes = _run_threads(lambda i: reservation_create(tenant=tenant, tokens=30, reference=f"t{i}").pk, THREADS)
    assert [o for o in outcomes if o[0] == "error"] == []
    ok = [o for o in outcomes if o[0] == "ok"]
    assert len(ok) == 500 // 30 == 16
    assert len(outcomes) - len(ok) == THREADS - 16
    account = BillingAccount.objects.get(tenant=tenant)
    assert account.allowance_remaining == 500 - 16 * 30 >= 0
    assert quota_get(tenant=tenant).reserved == 480
    call_command("billing_reconcile")  # exits non-zero (SystemExit) on drift


def test_concurrent_settle_and_release_of_one_reservation_happens_once(make_tenant):
    _skip_unless_postgres()
    tenant = make_tenant("free")
    r = reservation_create(tenant=tenant, tokens=100)

    def act(i):
        if i % 2:
            return reservation_settle(reservation_id=r.pk, gpu_seconds=1.0).status
        return reservation_release(reservation_id=r.pk, reason="race").status

    outcomes = _run_threads(act, 32)
    ok = [o for o in outcomes if o[0] == "ok"]
    assert len(ok) == 1
    assert all("ReservationNotOpen" in o[1] for o in outcomes if o[0] == "error")
    assert TokenReservation.objects.get(pk=r.pk).status in (ReservationStatus.SETTLED, ReservationStatus.RELEASED)
    call_command("billing_reconcile")


def test_concurrent_same_idempotency_key_holds_once(make_tenant):
    _skip_unless_postgres()
    tenant = make_tenant("free")
    outcomes = _run_threads(lambda i: reservation_create(tenant=tenant, tokens=20, idempotency_key="retry").pk, 32)
    ids = {o[1] for o in outcomes if o[0] == "ok"}
    assert len(ids) == 1 and len(outcomes) == 32
    assert quota_get(tenant=tenant).allowance_remaining == 480
    call_command("billing_reconcile")
