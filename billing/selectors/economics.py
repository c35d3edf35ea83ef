"""Unit economics: GPU cost, revenue and margin per tenant, node and month."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.utils import timezone

from billing.choices import InvoiceStatus
from billing.models import GpuCostRate, Invoice, Tenant
from billing.periods import month_bounds, month_previous
from billing.selectors.invoices import invoice_lines_compute_many

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


def tenant_revenue(*, tenant: Tenant, period_start: dt.date) -> tuple[Decimal, str]:
    """One tenant's revenue for a month (see ``economics_by_tenant`` for many at once)."""
    return _revenues([tenant], period_start)[tenant.pk][:2]


def _revenues(
    tenants: list[Tenant], period_start: dt.date, *, per_node: bool = True
) -> dict[int, tuple[Decimal, str, list]]:
    """Revenue, currency and usage rows per tenant for one month, in a bounded number of queries.

    Revenue is the invoice's total once it left draft (void counts 0), else the live line
    items; a month that ended before the tenant signed up has none.
    """
    first, next_first = month_bounds(period_start)
    invoices = {
        r["tenant_id"]: r
        for r in Invoice.objects.filter(period_start=first)
        .exclude(status=InvoiceStatus.DRAFT)
        .values("tenant_id", "status", "total", "currency")
    }
    months = invoice_lines_compute_many(tenants=tenants, period_start=first, per_node=per_node)
    out = {}
    for tenant in tenants:
        month = months[tenant.pk]
        invoice = invoices.get(tenant.pk)
        if invoice is not None:
            revenue = Decimal("0.00") if invoice["status"] == InvoiceStatus.VOID else invoice["total"]
            out[tenant.pk] = (revenue, invoice["currency"], month.usage)
        elif tenant.created_at and tenant.created_at.astimezone(tenant.tz).date() >= next_first:
            # No invoice for a month that ended before the tenant signed up: nothing to project.
            out[tenant.pk] = (Decimal("0.00"), tenant.plan.currency, month.usage)
        else:
            total = sum((line["amount"] for line in month.lines), Decimal("0.00"))
            out[tenant.pk] = (total, month.currency, month.usage)
    return out


def _tenants(tenants) -> list[Tenant]:
    return list(tenants) if tenants is not None else list(Tenant.objects.select_related("plan").order_by("name"))


def _tenant_economics(tenants: list[Tenant], period_start: dt.date, rates: dict, revenues=None) -> list[Economics]:
    revenues = revenues if revenues is not None else _revenues(tenants, period_start)
    out = []
    for tenant in tenants:
        revenue, currency, rows = revenues[tenant.pk]
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


def economics_by_tenant(*, period_start: dt.date, tenants=None) -> list[Economics]:
    """Per tenant for one month: tokens served, revenue, GPU cost and margin (highest revenue first).

    Aggregated in SQL: the number of queries depends on the tenants' distinct time zones,
    not on the number of tenants or jobs."""
    return _tenant_economics(_tenants(tenants), period_start, gpu_cost_rates())


def economics_by_node(*, period_start: dt.date, tenants=None) -> list[Economics]:
    """Per node for one month; revenue is each tenant's revenue split by its token share on the node."""
    tenants = _tenants(tenants)
    return _node_economics(tenants, _revenues(tenants, period_start), gpu_cost_rates())


def _node_economics(tenants: list[Tenant], revenues: dict, rates: dict) -> list[Economics]:
    tenants = sorted(tenants, key=lambda t: t.pk)
    nodes: dict[str, dict] = {}
    for tenant in tenants:
        revenue, currency, rows = revenues[tenant.pk]
        total_tokens = sum(int(r["tokens"] or 0) for r in rows)
        if not total_tokens:
            continue
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
    return _period_economics(_tenants(tenants), _periods(now.date(), months), gpu_cost_rates(), {})


def _periods(day: dt.date, months: int) -> list[dt.date]:
    first = day.replace(day=1)
    periods = []
    for _ in range(max(1, months)):
        periods.append(first)
        first = month_previous(first)
    return list(reversed(periods))


def _period_economics(tenants, periods, rates, revenues_by_period: dict) -> list[Economics]:
    out = []
    for period in periods:
        revenues = revenues_by_period.get(period)
        if revenues is None:
            # Months need no per-node split: a row per tenant and GPU model, not per node.
            revenues = revenues_by_period[period] = _revenues(tenants, period, per_node=False)
        rows = _tenant_economics(tenants, period, rates, revenues)
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


@dataclass(frozen=True)
class EconomicsOverview:
    """The staff overview's figures: per tenant and node for one month, and per month."""

    by_tenant: list[Economics]
    by_node: list[Economics]
    by_period: list[Economics]


def economics_overview(*, period_start: dt.date, months: int = 6, tenants=None) -> EconomicsOverview:
    """``economics_by_tenant``, ``economics_by_node`` and ``economics_by_period`` (ending with
    ``period_start``'s month) computed together: each month's revenue and usage once."""
    tenants = _tenants(tenants)
    rates = gpu_cost_rates()
    first = period_start.replace(day=1)
    # The current month per node (its node split); the earlier months per tenant only.
    current = _revenues(tenants, first)
    revenues_by_period: dict = {first: current}
    by_period = _period_economics(tenants, _periods(first, months), rates, revenues_by_period)
    return EconomicsOverview(
        by_tenant=_tenant_economics(tenants, first, rates, current),
        by_node=_node_economics(tenants, current, rates),
        by_period=by_period,
    )
