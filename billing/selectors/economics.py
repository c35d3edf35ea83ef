"""Unit economics: GPU cost, revenue and margin per tenant, node and month."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Count, Sum
from django.utils import timezone

from billing.choices import InvoiceStatus, ReservationStatus
from billing.models import GpuCostRate, Invoice, Tenant, TokenReservation
from billing.periods import month_bounds, month_previous
from billing.selectors.invoices import invoice_lines_compute

# GPU cost = recorded GPU-seconds / 3600 x the hourly cost of the node's GPU model. A CPU host
# (no GPU model) costs nothing here; an unknown model is priced at the default (A10) rate.
# Revenue for a month = the tenant's invoice total when one exists (void counts 0), else the
# live line items the invoice would carry. Per node, each tenant's revenue is split by its
# share of tokens served on that node.

DEFAULT_GPU_MODEL = "A10"


def gpu_cost_rates() -> dict[str, GpuCostRate]:
    return {r.gpu_model: r for r in GpuCostRate.objects.all()}


def gpu_cost(*, gpu_model: str, gpu_seconds: float, rates: dict | None = None) -> Decimal:
    """Cost of ``gpu_seconds`` on one GPU of ``gpu_model`` (unrounded Decimal)."""
    if not gpu_model or not gpu_seconds:
        return Decimal("0")
    rates = gpu_cost_rates() if rates is None else rates
    rate = rates.get(gpu_model) or rates.get(DEFAULT_GPU_MODEL)
    if rate is None:
        return Decimal("0")
    return Decimal(str(gpu_seconds)) / Decimal(3600) * rate.hourly_cost


@dataclass(frozen=True)
class Economics:
    """Revenue, GPU cost and margin for one tenant, node or month."""

    key: str
    label: str
    tokens: int
    jobs: int
    gpu_seconds: float
    revenue: Decimal
    gpu_cost: Decimal
    currency: str

    @property
    def margin(self) -> Decimal:
        return self.revenue - self.gpu_cost

    @property
    def margin_pct(self) -> Decimal | None:
        if not self.revenue:
            return None
        return (self.margin / self.revenue * 100).quantize(Decimal("0.1"))


def _month_range(tenant: Tenant, period_start: dt.date) -> tuple[dt.datetime, dt.datetime]:
    first, next_first = month_bounds(period_start)
    tz = tenant.tz
    return dt.datetime.combine(first, dt.time(0), tzinfo=tz), dt.datetime.combine(next_first, dt.time(0), tzinfo=tz)


def tenant_revenue(*, tenant: Tenant, period_start: dt.date) -> tuple[Decimal, str]:
    first, next_first = month_bounds(period_start)
    invoice = Invoice.objects.filter(tenant_id=tenant.pk, period_start=first).first()
    if invoice is not None and invoice.status != InvoiceStatus.DRAFT:
        return (Decimal("0.00") if invoice.status == InvoiceStatus.VOID else invoice.total), invoice.currency
    if invoice is None and tenant.created_at and tenant.created_at.astimezone(tenant.tz).date() >= next_first:
        # No invoice for a month that ended before the tenant signed up: nothing to project.
        return Decimal("0.00"), tenant.plan.currency
    currency, lines = invoice_lines_compute(tenant=tenant, period_start=first)
    return sum((line["amount"] for line in lines), Decimal("0.00")), currency


def _usage_rows(tenant: Tenant, period_start: dt.date):
    start, end = _month_range(tenant, period_start)
    return (
        TokenReservation.objects.filter(
            tenant_id=tenant.pk, status=ReservationStatus.SETTLED, settled_at__gte=start, settled_at__lt=end
        )
        .values("node_name", "gpu_model")
        .annotate(tokens=Sum("tokens"), jobs=Count("id"), gpu_seconds=Sum("gpu_seconds"))
    )


def economics_by_tenant(*, period_start: dt.date, tenants=None) -> list[Economics]:
    """Per tenant for one month: tokens served, revenue, GPU cost and margin (highest revenue first)."""
    rates = gpu_cost_rates()
    out = []
    for tenant in tenants if tenants is not None else Tenant.objects.select_related("plan").order_by("name"):
        revenue, currency = tenant_revenue(tenant=tenant, period_start=period_start)
        rows = list(_usage_rows(tenant, period_start))
        cost = sum(
            (gpu_cost(gpu_model=r["gpu_model"], gpu_seconds=r["gpu_seconds"] or 0, rates=rates) for r in rows),
            Decimal("0"),
        )
        out.append(
            Economics(
                key=str(tenant.pk),
                label=tenant.name,
                tokens=sum(int(r["tokens"] or 0) for r in rows),
                jobs=sum(int(r["jobs"]) for r in rows),
                gpu_seconds=sum(float(r["gpu_seconds"] or 0) for r in rows),
                revenue=revenue,
                gpu_cost=cost.quantize(Decimal("0.01"), ROUND_HALF_UP),
                currency=currency,
            )
        )
    return sorted(out, key=lambda e: (-e.revenue, e.label))


def economics_by_node(*, period_start: dt.date) -> list[Economics]:
    """Per node for one month; revenue is each tenant's revenue split by its token share on the node."""
    rates = gpu_cost_rates()
    nodes: dict[str, dict] = {}
    for tenant in Tenant.objects.select_related("plan").order_by("pk"):
        rows = list(_usage_rows(tenant, period_start))
        total_tokens = sum(int(r["tokens"] or 0) for r in rows)
        if not total_tokens:
            continue
        revenue, currency = tenant_revenue(tenant=tenant, period_start=period_start)
        for r in rows:
            name = r["node_name"] or "(unknown node)"
            node = nodes.setdefault(
                name,
                {
                    "tokens": 0,
                    "jobs": 0,
                    "gpu_seconds": 0.0,
                    "revenue": Decimal("0"),
                    "cost": Decimal("0"),
                    "currency": currency,
                },
            )
            tokens = int(r["tokens"] or 0)
            node["tokens"] += tokens
            node["jobs"] += int(r["jobs"])
            node["gpu_seconds"] += float(r["gpu_seconds"] or 0)
            node["revenue"] += revenue * Decimal(tokens) / Decimal(total_tokens)
            node["cost"] += gpu_cost(gpu_model=r["gpu_model"], gpu_seconds=r["gpu_seconds"] or 0, rates=rates)
    cent = Decimal("0.01")
    return sorted(
        (
            Economics(
                key=name,
                label=name,
                tokens=n["tokens"],
                jobs=n["jobs"],
                gpu_seconds=n["gpu_seconds"],
                revenue=n["revenue"].quantize(cent, ROUND_HALF_UP),
                gpu_cost=n["cost"].quantize(cent, ROUND_HALF_UP),
                currency=n["currency"],
            )
            for name, n in nodes.items()
        ),
        key=lambda e: (-e.revenue, e.label),
    )


def economics_by_period(*, months: int = 6, now: dt.datetime | None = None, tenants=None) -> list[Economics]:
    """Whole-fleet totals per calendar month, oldest first, ending with the current month."""
    now = now or timezone.now()
    if tenants is None:
        tenants = list(Tenant.objects.select_related("plan").order_by("name"))
    first = now.date().replace(day=1)
    periods = []
    for _ in range(max(1, months)):
        periods.append(first)
        first = month_previous(first)
    out = []
    for period in reversed(periods):
        rows = economics_by_tenant(period_start=period, tenants=tenants)
        out.append(
            Economics(
                key=f"{period:%Y-%m}",
                label=f"{period:%B %Y}",
                tokens=sum(e.tokens for e in rows),
                jobs=sum(e.jobs for e in rows),
                gpu_seconds=sum(e.gpu_seconds for e in rows),
                revenue=sum((e.revenue for e in rows), Decimal("0.00")),
                gpu_cost=sum((e.gpu_cost for e in rows), Decimal("0.00")),
                currency=rows[0].currency if rows else "USD",
            )
        )
    return out
