"""Feature gates and plan changes (upgrade now with proration, downgrade at period end)."""

import datetime as dt
from decimal import Decimal

import pytest

from billing.errors import FeatureNotInPlan, InvalidPlanChange
from billing.models import LedgerEntry, LedgerKind, PlanChange, Tenant
from billing.reconcile import ledger_drift_find
from billing.selectors import quota_get
from billing.services import UnknownPlan, plan_change, plan_feature_check, reservation_create

UTC = dt.UTC


def test_free_plan_is_mandarin_only_without_instructions(make_tenant):
    tenant = make_tenant("free")
    plan_feature_check(tenant=tenant, language="zh", features=set())
    with pytest.raises(FeatureNotInPlan) as exc:
        plan_feature_check(tenant=tenant, language="en", features=set())
    assert exc.value.status == 403 and exc.value.code == "feature_not_in_plan"
    assert "'en'" in exc.value.message and "Free" in exc.value.message
    for feature in ("dialect", "emotion", "style"):
        with pytest.raises(FeatureNotInPlan) as exc:
            plan_feature_check(tenant=tenant, language="zh", features={feature})
        assert feature.capitalize() in exc.value.message and "Free" in exc.value.message
        assert exc.value.extra["feature"] == feature


def test_pro_allows_everything_but_dedicated_nodes(make_tenant):
    tenant = make_tenant("pro")
    plan_feature_check(tenant=tenant, language="ja", features={"dialect", "emotion", "style", "topup"})
    with pytest.raises(FeatureNotInPlan):
        plan_feature_check(tenant=tenant, language="zh", features={"dedicated_nodes"})
    enterprise = make_tenant("enterprise")
    plan_feature_check(tenant=enterprise, language="ko", features={"dedicated_nodes", "dialect"})


def test_unknown_feature_is_a_clear_error(make_tenant):
    from console.errors import VoxfleetError

    with pytest.raises(VoxfleetError) as exc:
        plan_feature_check(tenant=make_tenant("pro"), language="zh", features={"teleport"})
    assert exc.value.code == "unknown_feature"


def test_unknown_plan(make_tenant):
    tenant = make_tenant("free")
    with pytest.raises(UnknownPlan):
        plan_change(tenant=tenant, plan_code="platinum")
    tenant.refresh_from_db()
    assert tenant.plan.code == "free" and PlanChange.objects.count() == 0


def test_upgrade_free_to_pro_is_immediate_and_prorated(make_tenant):
    tenant = make_tenant("free")
    # 15 March 00:00 UTC: 17 of March's 31 days remain.
    now = dt.datetime(2026, 3, 15, tzinfo=UTC)
    reservation_create(tenant=tenant, tokens=100, now=now)
    change = plan_change(tenant=tenant, plan_code="pro", now=now)
    tenant.refresh_from_db()
    assert tenant.plan.code == "pro" and change.kind == "upgrade" and change.applied_at == now
    fraction = Decimal(17) / Decimal(31)
    assert change.prorated_amount == (Decimal("29.00") * fraction).quantize(Decimal("0.01"))  # 15.90
    assert change.prorated_amount == Decimal("15.90")
    assert change.prorated_tokens == int(100_000 * fraction) == 54_838
    q = quota_get(tenant=tenant, now=now)
    assert q.allowance_remaining == 54_838 and q.resets_at == dt.datetime(2026, 4, 1, tzinfo=UTC)
    plan_feature_check(tenant=tenant, language="en", features={"dialect"})  # features apply at once
    assert ledger_drift_find() == []


def test_upgrade_pro_to_enterprise_keeps_remaining_and_adds_prorated_difference(make_tenant):
    tenant = make_tenant("pro")
    now = dt.datetime(2026, 4, 16, tzinfo=UTC)  # 15 of 30 days remain
    reservation_create(tenant=tenant, tokens=40_000, now=now)
    change = plan_change(tenant=tenant, plan_code="enterprise", now=now, by_staff=True)
    assert change.prorated_amount == Decimal("985.50")  # (2000 - 29) / 2
    assert quota_get(tenant=tenant, now=now).allowance_remaining == 60_000 + (10_000_000 - 100_000) // 2
    assert ledger_drift_find() == []


def test_downgrade_waits_for_period_end(make_tenant):
    tenant = make_tenant("pro")
    now = dt.datetime(2026, 6, 10, tzinfo=UTC)
    reservation_create(tenant=tenant, tokens=10, now=now)
    change = plan_change(tenant=tenant, plan_code="free", now=now)
    assert change.kind == "downgrade" and change.effective_at == dt.datetime(2026, 7, 1, tzinfo=UTC)
    tenant.refresh_from_db()
    assert tenant.plan.code == "pro"
    assert quota_get(tenant=tenant, now=now).allowance_remaining == 99_990
    july = dt.datetime(2026, 7, 1, 0, 0, 5, tzinfo=UTC)
    reservation_create(tenant=tenant, tokens=10, now=july)
    tenant = Tenant.objects.get(pk=tenant.pk)
    assert tenant.plan.code == "free"
    assert quota_get(tenant=tenant, now=july).allowance_remaining == 490
    change.refresh_from_db()
    assert change.applied_at == dt.datetime(2026, 7, 1, tzinfo=UTC)
    expiry = LedgerEntry.objects.get(tenant=tenant, kind=LedgerKind.EXPIRY)
    assert expiry.available_delta == -99_990  # the June allowance lapsed through a ledger row
    assert ledger_drift_find() == []


def test_asking_for_current_plan_cancels_pending_downgrade(make_tenant):
    tenant = make_tenant("pro")
    now = dt.datetime(2026, 6, 10, tzinfo=UTC)
    plan_change(tenant=tenant, plan_code="free", now=now)
    cancelled = plan_change(tenant=tenant, plan_code="pro", now=now)
    assert cancelled.cancelled_at == now
    reservation_create(tenant=tenant, tokens=1, now=dt.datetime(2026, 7, 2, tzinfo=UTC))
    tenant.refresh_from_db()
    assert tenant.plan.code == "pro"
    with pytest.raises(InvalidPlanChange):
        plan_change(tenant=tenant, plan_code="pro", now=dt.datetime(2026, 7, 3, tzinfo=UTC))
    assert ledger_drift_find() == []


def test_upgrades_sharing_a_window_start_roll_over_cleanly(make_tenant):
    # Free -> Pro on the 1st (both windows start at 00:00 on the 1st), then Pro -> Enterprise
    # mid-month (same monthly window), then the month rolls over.
    tenant = make_tenant("free")
    first = dt.datetime(2026, 8, 1, 10, tzinfo=UTC)
    reservation_create(tenant=tenant, tokens=100, now=first)
    plan_change(tenant=tenant, plan_code="pro", now=first)
    mid = dt.datetime(2026, 8, 16, 12, tzinfo=UTC)
    reservation_create(tenant=tenant, tokens=1_000, now=mid)
    plan_change(tenant=tenant, plan_code="enterprise", now=mid, by_staff=True)
    september = dt.datetime(2026, 9, 1, 0, 0, 1, tzinfo=UTC)
    reservation_create(tenant=tenant, tokens=10, now=september)
    assert quota_get(tenant=tenant, now=september).allowance_remaining == 10_000_000 - 10
    assert ledger_drift_find() == []


def test_customers_cannot_move_themselves_onto_a_contract_plan(make_tenant):
    tenant = make_tenant("pro")
    with pytest.raises(InvalidPlanChange, match="contract"):
        plan_change(tenant=tenant, plan_code="enterprise")
    tenant.refresh_from_db()
    assert tenant.plan.code == "pro"
    assert plan_change(tenant=tenant, plan_code="enterprise", by_staff=True).to_plan.code == "enterprise"
