"""Reserve -> settle / release, spending order, windows, idempotency and bad input."""

import datetime as dt
import zoneinfo

import pytest
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from billing.choices import LedgerBucket, LedgerKind, ReservationStatus
from billing.errors import InsufficientQuota, InvalidAmount, ReservationNotFound, ReservationNotOpen
from billing.models import BillingAccount, LedgerEntry, TokenReservation, TopUp
from billing.reconcile import ledger_drift_find
from billing.selectors import quota_get
from billing.services import (
    ledger_adjust,
    reservation_create,
    reservation_release,
    reservation_settle,
    topup_grant,
    topups_expire_due,
)
from console.errors import Conflict

UTC = dt.UTC


def ledger_balances(*, tenant) -> dict:
    """Balances re-derived from the tenant's ledger rows alone (the open window's allowance)."""
    rows = LedgerEntry.objects.filter(tenant_id=tenant.pk)
    account = BillingAccount.objects.filter(tenant_id=tenant.pk).first()
    window = account.window_start if account else None
    allowance = (
        rows.filter(bucket=LedgerBucket.ALLOWANCE, window_start=window).aggregate(s=Sum("available_delta"))["s"] or 0
    )
    topups = rows.filter(bucket=LedgerBucket.TOPUP).aggregate(s=Sum("available_delta"))["s"] or 0
    held = rows.aggregate(s=Sum("held_delta"))["s"] or 0
    consumed = -(rows.filter(kind=LedgerKind.SETTLE).aggregate(s=Sum("held_delta"))["s"] or 0)
    return {"allowance": int(allowance), "topups": int(topups), "held": int(held), "consumed": int(consumed)}


def test_reserve_holds_exact_tokens_and_settle_consumes(make_tenant):
    tenant = make_tenant("free")
    r = reservation_create(tenant=tenant, tokens=120, reference="job:1")
    q = quota_get(tenant=tenant)
    assert (q.allowance_remaining, q.reserved, q.remaining) == (380, 120, 380)
    settled = reservation_settle(reservation_id=r.pk, gpu_seconds=2.5, node_name="gpu-1", gpu_model="A10")
    assert settled.status == ReservationStatus.SETTLED
    assert (settled.gpu_seconds, settled.node_name, settled.gpu_model) == (2.5, "gpu-1", "A10")
    q = quota_get(tenant=tenant)
    assert (q.allowance_remaining, q.reserved, q.used) == (380, 0, 120)
    assert ledger_balances(tenant=tenant) == {"allowance": 380, "topups": 0, "held": 0, "consumed": 120}
    assert ledger_drift_find() == []


def test_release_returns_tokens(make_tenant):
    tenant = make_tenant("free")
    r = reservation_create(tenant=tenant, tokens=500)
    with pytest.raises(InsufficientQuota):
        reservation_create(tenant=tenant, tokens=1)
    released = reservation_release(reservation_id=r.pk, reason="failed")
    assert released.status == ReservationStatus.RELEASED and released.release_reason == "failed"
    assert quota_get(tenant=tenant).remaining == 500
    assert ledger_drift_find() == []


def test_settle_twice_raises_and_changes_nothing(make_tenant):
    tenant = make_tenant("free")
    r = reservation_create(tenant=tenant, tokens=10)
    reservation_settle(reservation_id=r.pk, gpu_seconds=1.0)
    before = LedgerEntry.objects.count()
    with pytest.raises(ReservationNotOpen) as exc:
        reservation_settle(reservation_id=r.pk, gpu_seconds=9.0)
    assert exc.value.status == 409
    with pytest.raises(ReservationNotOpen):
        reservation_release(reservation_id=r.pk, reason="late failure")
    r.refresh_from_db()
    assert (r.status, r.gpu_seconds) == (ReservationStatus.SETTLED, 1.0)
    assert LedgerEntry.objects.count() == before


def test_release_twice_raises(make_tenant):
    tenant = make_tenant("free")
    r = reservation_create(tenant=tenant, tokens=10)
    reservation_release(reservation_id=r.pk, reason="cancelled")
    with pytest.raises(ReservationNotOpen):
        reservation_release(reservation_id=r.pk, reason="cancelled")
    with pytest.raises(ReservationNotOpen):
        reservation_settle(reservation_id=r.pk)
    assert quota_get(tenant=tenant).remaining == 500


def test_unknown_reservation(db):
    with pytest.raises(ReservationNotFound):
        reservation_settle(reservation_id=987654)
    with pytest.raises(ReservationNotFound):
        reservation_release(reservation_id=987654, reason="x")


def test_idempotency_key_reserves_once(make_tenant):
    tenant = make_tenant("free")
    a = reservation_create(tenant=tenant, tokens=50, idempotency_key="req-1")
    b = reservation_create(tenant=tenant, tokens=50, idempotency_key="req-1")
    assert a.pk == b.pk
    assert quota_get(tenant=tenant).remaining == 450
    with pytest.raises(Conflict):
        reservation_create(tenant=tenant, tokens=60, idempotency_key="req-1")
    # Keys are per tenant.
    other = make_tenant("free")
    c = reservation_create(tenant=other, tokens=50, idempotency_key="req-1")
    assert c.pk != a.pk


@pytest.mark.parametrize("tokens", [0, -5, 1.5, "10", True, None])
def test_bad_token_amounts_are_refused(make_tenant, tokens):
    tenant = make_tenant("free")
    with pytest.raises(InvalidAmount):
        reservation_create(tenant=tenant, tokens=tokens)
    assert TokenReservation.objects.count() == 0
    assert LedgerEntry.objects.filter(kind=LedgerKind.RESERVE).count() == 0


@pytest.mark.parametrize("seconds", [-1, float("nan"), float("inf"), "abc"])
def test_bad_gpu_seconds_are_refused(make_tenant, seconds):
    tenant = make_tenant("free")
    r = reservation_create(tenant=tenant, tokens=5)
    with pytest.raises(InvalidAmount):
        reservation_settle(reservation_id=r.pk, gpu_seconds=seconds)
    r.refresh_from_db()
    assert r.status == ReservationStatus.OPEN


def test_insufficient_quota_is_429_and_writes_nothing(make_tenant):
    tenant = make_tenant("free")
    with pytest.raises(InsufficientQuota) as exc:
        reservation_create(tenant=tenant, tokens=501)
    assert exc.value.status == 429 and exc.value.code == "insufficient_quota"
    assert "501" in exc.value.message
    assert TokenReservation.objects.count() == 0
    assert LedgerEntry.objects.count() == 0  # not even the lazy grant survives the rollback


def test_free_window_resets_at_local_midnight(make_tenant):
    tenant = make_tenant("free", time_zone="Asia/Shanghai")
    tz = zoneinfo.ZoneInfo("Asia/Shanghai")
    evening = dt.datetime(2026, 3, 10, 23, 30, tzinfo=tz)
    reservation_create(tenant=tenant, tokens=500, now=evening)
    with pytest.raises(InsufficientQuota):
        reservation_create(tenant=tenant, tokens=1, now=evening + dt.timedelta(minutes=29))
    # 00:00 Shanghai = 16:00 UTC the day before; the next local day has a fresh 500.
    after_midnight = dt.datetime(2026, 3, 11, 0, 0, 1, tzinfo=tz)
    q = quota_get(tenant=tenant, now=after_midnight)
    assert q.remaining == 500 and q.period_start == dt.datetime(2026, 3, 11, tzinfo=tz)
    assert q.resets_at == dt.datetime(2026, 3, 12, tzinfo=tz)
    reservation_create(tenant=tenant, tokens=200, now=after_midnight)
    assert quota_get(tenant=tenant, now=after_midnight).allowance_remaining == 300
    grants = LedgerEntry.objects.filter(tenant=tenant, kind=LedgerKind.GRANT).count()
    assert grants == 2
    assert ledger_drift_find() == []


def test_pro_window_is_the_billing_month(make_tenant):
    tenant = make_tenant("pro")
    now = dt.datetime(2026, 2, 14, 12, tzinfo=UTC)
    q = quota_get(tenant=tenant, now=now)
    assert (q.allowance_tokens, q.period_start, q.resets_at) == (
        100_000,
        dt.datetime(2026, 2, 1, tzinfo=UTC),
        dt.datetime(2026, 3, 1, tzinfo=UTC),
    )
    reservation_create(tenant=tenant, tokens=99_000, now=now)
    assert quota_get(tenant=tenant, now=now).remaining == 1_000
    assert quota_get(tenant=tenant, now=dt.datetime(2026, 3, 1, tzinfo=UTC)).remaining == 100_000


def test_grant_is_idempotent_per_window(make_tenant):
    tenant = make_tenant("free")
    now = timezone.now()
    for _ in range(3):
        r = reservation_create(tenant=tenant, tokens=1, now=now)
        reservation_settle(reservation_id=r.pk)
    assert LedgerEntry.objects.filter(tenant=tenant, kind=LedgerKind.GRANT).count() == 1


def test_spend_order_allowance_then_topups_by_earliest_expiry(make_tenant):
    tenant = make_tenant("pro")
    now = timezone.now()
    late = topup_grant(tenant=tenant, tokens=1_000, expires_at=now + dt.timedelta(days=90), now=now)
    early = topup_grant(tenant=tenant, tokens=1_000, expires_at=now + dt.timedelta(days=30), now=now)
    r = reservation_create(tenant=tenant, tokens=100_000 + 1_500, now=now)
    assert r.from_allowance == 100_000
    assert r.from_topups == [[early.pk, 1_000], [late.pk, 500]]
    early.refresh_from_db()
    late.refresh_from_db()
    assert (early.remaining, late.remaining) == (0, 500)
    reservation_release(reservation_id=r.pk, reason="failed", now=now)
    early.refresh_from_db()
    late.refresh_from_db()
    assert (early.remaining, late.remaining) == (1_000, 1_000)
    assert quota_get(tenant=tenant, now=now).remaining == 102_000
    assert ledger_drift_find() == []


def test_expired_topups_are_not_spent_and_expire_by_ledger_row(make_tenant):
    tenant = make_tenant("pro")
    t0 = timezone.now()
    topup = topup_grant(tenant=tenant, tokens=700, expires_at=t0 + dt.timedelta(days=1), now=t0)
    later = t0 + dt.timedelta(days=2)
    assert quota_get(tenant=tenant, now=later).topup_remaining == 0
    assert topups_expire_due(tenant=tenant, now=later) == 700
    assert topups_expire_due(tenant=tenant, now=later) == 0  # idempotent
    topup.refresh_from_db()
    assert (topup.remaining, topup.expired_at) == (0, later)
    expiry = LedgerEntry.objects.get(topup=topup, kind=LedgerKind.EXPIRY)
    assert expiry.available_delta == -700
    assert ledger_drift_find() == []


def test_expired_topup_cannot_be_granted(make_tenant):
    from billing.errors import TopUpExpired

    tenant = make_tenant("pro")
    with pytest.raises(TopUpExpired):
        topup_grant(tenant=tenant, tokens=10, expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert TopUp.objects.count() == 0


def test_release_into_expired_topup_writes_it_off(make_tenant):
    tenant = make_tenant("free")
    t0 = timezone.now()
    topup = topup_grant(tenant=tenant, tokens=100, expires_at=t0 + dt.timedelta(hours=1), now=t0)
    r = reservation_create(tenant=tenant, tokens=550, now=t0)
    assert r.from_topups == [[topup.pk, 50]]
    reservation_release(reservation_id=r.pk, reason="timeout", now=t0 + dt.timedelta(hours=2))
    topup.refresh_from_db()
    assert topup.remaining == 50  # the 50 held tokens came back and lapsed at once
    assert ledger_drift_find() == []


def test_release_after_window_closed_does_not_inflate_new_window(make_tenant):
    tenant = make_tenant("free")
    day1 = dt.datetime(2026, 5, 1, 10, tzinfo=UTC)
    r = reservation_create(tenant=tenant, tokens=300, now=day1)
    day2 = day1 + dt.timedelta(days=1)
    reservation_create(tenant=tenant, tokens=10, now=day2)
    reservation_release(reservation_id=r.pk, reason="timeout", now=day2)
    assert quota_get(tenant=tenant, now=day2).allowance_remaining == 490
    assert ledger_drift_find() == []


def test_overage_when_plan_prices_it(make_tenant):
    from decimal import Decimal

    tenant = make_tenant("free")
    tenant.plan.overage_price_per_1k = Decimal("0.5000")
    tenant.plan.save()
    r = reservation_create(tenant=tenant, tokens=600)
    assert (r.from_allowance, r.from_overage) == (500, 100)
    reservation_settle(reservation_id=r.pk)
    assert ledger_drift_find() == []


def test_adjustments(make_tenant, staff_user):
    tenant = make_tenant("free")
    row = ledger_adjust(tenant=tenant, tokens=25, note="goodwill", created_by=staff_user)
    assert row.kind == LedgerKind.ADJUSTMENT and row.created_by == staff_user
    assert quota_get(tenant=tenant).allowance_remaining == 525
    with pytest.raises(InvalidAmount):
        ledger_adjust(tenant=tenant, tokens=0, note="nothing")
    with pytest.raises(InvalidAmount):
        ledger_adjust(tenant=tenant, tokens=-1000, note="too much")
    assert quota_get(tenant=tenant).allowance_remaining == 525
    assert ledger_drift_find() == []


def test_ledger_rows_are_append_only(make_tenant):
    from billing.errors import LedgerImmutable

    tenant = make_tenant("free")
    reservation_create(tenant=tenant, tokens=5)
    row = LedgerEntry.objects.filter(kind=LedgerKind.RESERVE).get()
    row.available_delta = 1_000
    with pytest.raises(LedgerImmutable):
        row.save()
    with pytest.raises(LedgerImmutable):
        row.delete()
    assert LedgerEntry.objects.get(pk=row.pk).available_delta == -5


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_ledger_update_refused_by_database_on_postgresql(make_tenant):
    from django.db import DatabaseError, connection

    if connection.vendor != "postgresql":
        pytest.skip("the append-only trigger is PostgreSQL-only; SQLite relies on the model guard")
    tenant = make_tenant("free")
    reservation_create(tenant=tenant, tokens=5)
    with pytest.raises(DatabaseError), transaction.atomic():
        LedgerEntry.objects.filter(tenant=tenant).update(available_delta=999)
    with pytest.raises(DatabaseError), transaction.atomic():
        LedgerEntry.objects.filter(tenant=tenant).delete()
    assert LedgerEntry.objects.filter(tenant=tenant, available_delta=999).count() == 0


def test_reconcile_detects_drift(make_tenant):
    from billing.models import BillingAccount

    tenant = make_tenant("free")
    r = reservation_create(tenant=tenant, tokens=40)
    assert ledger_drift_find() == []
    BillingAccount.objects.filter(tenant=tenant).update(allowance_remaining=470)  # tokens out of thin air
    TokenReservation.objects.filter(pk=r.pk).update(status=ReservationStatus.SETTLED)  # settled, no ledger row
    drift = ledger_drift_find()
    assert any("allowance counter 470" in d for d in drift)
    assert any(f"reservation {r.pk}: settled" in d for d in drift)
    assert any("held" in d or "holds" in d for d in drift)
