"""Usage by day and unit economics (revenue, GPU cost, margin per tenant, node, month)."""

import datetime as dt
from decimal import Decimal

from django.utils import timezone

from billing.models import GpuCostRate
from billing.selectors import (
    economics_by_node,
    economics_by_period,
    economics_by_tenant,
    gpu_cost,
    usage_by_day,
)
from billing.services import invoice_draft_build, invoice_finalize, reservation_create, reservation_settle

UTC = dt.UTC


def test_default_a10_rate_arithmetic(db):
    # Seed: 1,000,000 tokens ~ 1.2 A10 GPU-hours -> 833,333 tokens per GPU-hour.
    # Default A10 cost USD 0.75/h -> 1M tokens cost about 1.2 x 0.75 = USD 0.90.
    a10 = GpuCostRate.objects.get(gpu_model="A10")
    assert a10.hourly_cost == Decimal("0.7500") and a10.tokens_per_gpu_hour == 833_333
    hours = Decimal(1_000_000) / Decimal(a10.tokens_per_gpu_hour)
    assert abs(hours - Decimal("1.2")) < Decimal("0.00001")
    cost = gpu_cost(gpu_model="A10", gpu_seconds=float(hours * 3600))
    assert cost.quantize(Decimal("0.01")) == Decimal("0.90")


def test_gpu_cost_rules(db):
    assert gpu_cost(gpu_model="", gpu_seconds=3600) == 0  # CPU host
    assert gpu_cost(gpu_model="A10", gpu_seconds=3600) == Decimal("0.75")
    assert gpu_cost(gpu_model="Z9000", gpu_seconds=3600) == Decimal("0.75")  # unknown: default rate
    GpuCostRate.objects.create(gpu_model="H100", hourly_cost=Decimal("2.5000"))
    assert gpu_cost(gpu_model="H100", gpu_seconds=1800) == Decimal("1.25")


def test_usage_by_day_zero_fills_in_tenant_tz(make_tenant):
    tenant = make_tenant("pro", time_zone="America/New_York")
    now = timezone.now()
    r = reservation_create(tenant=tenant, tokens=42, now=now)
    reservation_settle(reservation_id=r.pk, gpu_seconds=3.0, now=now)
    rows = usage_by_day(tenant=tenant, days=7, now=now)
    assert len(rows) == 7
    assert rows[-1]["day"] == now.astimezone(tenant.tz).date()
    assert (rows[-1]["tokens"], rows[-1]["jobs"], rows[-1]["gpu_seconds"]) == (42, 1, 3.0)
    assert sum(r["tokens"] for r in rows[:-1]) == 0


def test_economics_per_tenant_node_and_month(make_tenant):
    pro = make_tenant("pro", name="ProCo")
    free = make_tenant("free", name="FreeCo")
    t = dt.datetime(2026, 5, 10, tzinfo=UTC)
    for tenant, node, tokens, seconds in [
        (pro, "gpu-a", 3000, 7200.0),
        (pro, "gpu-b", 1000, 3600.0),
        (free, "gpu-a", 100, 360.0),
    ]:
        r = reservation_create(tenant=tenant, tokens=tokens, now=t)
        reservation_settle(reservation_id=r.pk, gpu_seconds=seconds, node_name=node, gpu_model="A10", now=t)
    invoice_finalize(invoice_id=invoice_draft_build(tenant=pro, period_start=dt.date(2026, 5, 1)).pk)
    by_tenant = {e.label: e for e in economics_by_tenant(period_start=dt.date(2026, 5, 1))}
    assert by_tenant["ProCo"].revenue == Decimal("29.00")
    assert by_tenant["ProCo"].gpu_cost == Decimal("2.25")  # 3 h x 0.75
    assert by_tenant["ProCo"].margin == Decimal("26.75")
    assert by_tenant["ProCo"].margin_pct == Decimal("92.2")
    assert by_tenant["FreeCo"].revenue == 0 and by_tenant["FreeCo"].margin == Decimal("-0.08")
    assert by_tenant["FreeCo"].margin_pct is None
    by_node = {e.label: e for e in economics_by_node(period_start=dt.date(2026, 5, 1))}
    # ProCo's 29.00 split by token share: 3/4 to gpu-a, 1/4 to gpu-b.
    assert by_node["gpu-a"].revenue == Decimal("21.75") and by_node["gpu-b"].revenue == Decimal("7.25")
    assert by_node["gpu-a"].gpu_cost == Decimal("1.58")  # 2.1 h x 0.75 = 1.575
    assert by_node["gpu-a"].tokens == 3100 and by_node["gpu-b"].jobs == 1
    months = economics_by_period(months=2, now=dt.datetime(2026, 6, 3, tzinfo=UTC))
    assert [m.key for m in months] == ["2026-05", "2026-06"]
    assert months[0].revenue == Decimal("29.00") and months[0].tokens == 4100


def test_no_subscription_is_projected_into_months_before_sign_up(make_tenant):
    pro = make_tenant("pro")
    this_month = timezone.now().date().replace(day=1)
    before_sign_up = (this_month - dt.timedelta(days=40)).replace(day=1)
    [earlier] = [e for e in economics_by_tenant(period_start=before_sign_up) if e.label == pro.name]
    [current] = [e for e in economics_by_tenant(period_start=this_month) if e.label == pro.name]
    assert earlier.revenue == Decimal("0.00")
    assert current.revenue == Decimal("29.00")  # this month's subscription is projected
    months = economics_by_period(months=3)
    assert months[-1].revenue >= Decimal("29.00") and months[0].revenue == Decimal("0.00")


def test_many_tenants_lines_match_one_tenant_lines(make_tenant):
    """The staff economics' bulk line items are exactly each tenant's own invoice lines."""
    from billing.models import Plan
    from billing.selectors.invoices import invoice_lines_compute, invoice_lines_compute_many
    from billing.services import custom_fee_add, plan_change, topup_purchase
    from fleetagent.services import node_create

    may = dt.date(2026, 5, 1)
    t = dt.datetime(2026, 5, 10, 12, tzinfo=UTC)
    ent = make_tenant("enterprise", name="EntCo")
    node_create(name="ent-gpu", dedicated_tenant=ent)
    custom_fee_add(tenant=ent, description="integration work", amount="150.00", period_month=may)
    up = make_tenant("free", name="UpCo")
    up.time_zone = "Asia/Shanghai"
    up.save()
    plan_change(tenant=up, plan_code="pro", now=t)
    up.refresh_from_db()
    topup_purchase(tenant=up, pack_code="topup-10k", now=t)
    Plan.objects.filter(code="pro").update(overage_price_per_1k=Decimal("0.5000"))
    over = make_tenant("pro", name="OverCo")
    for tenant, node, tokens in [(ent, "ent-gpu", 500), (up, "gpu-a", 300), (over, "gpu-a", 120_000)]:
        tenant.refresh_from_db()
        r = reservation_create(tenant=tenant, tokens=tokens, now=t)
        reservation_settle(reservation_id=r.pk, gpu_seconds=5400.0, node_name=node, gpu_model="A10", now=t)
    tenants = [ent, up, over]
    for tenant in tenants:
        tenant.refresh_from_db()
    many = invoice_lines_compute_many(tenants=tenants, period_start=may)
    per_model = invoice_lines_compute_many(tenants=tenants, period_start=may, per_node=False)
    batch = invoice_lines_compute_many(tenants=tenants[:2], period_start=may, only_these=True)
    kinds = set()
    for tenant in tenants:
        currency, lines = invoice_lines_compute(tenant=tenant, period_start=may)
        assert (many[tenant.pk].currency, many[tenant.pk].lines) == (currency, lines), tenant.name
        assert per_model[tenant.pk].lines == lines, tenant.name
        if tenant in tenants[:2]:
            assert batch[tenant.pk].lines == lines, tenant.name
        kinds |= {line["kind"] for line in lines}
    assert kinds == {"subscription", "proration", "topup", "overage", "gpu_rental", "custom"}
