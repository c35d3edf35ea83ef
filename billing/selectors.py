"""Billing reads: quota status, usage, revenue, GPU cost and margin (keyword-only, no writes)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Count, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from billing.models import (
    BillingAccount,
    GpuCostRate,
    Invoice,
    InvoiceStatus,
    LedgerBucket,
    LedgerEntry,
    LedgerKind,
    ReservationStatus,
    Tenant,
    TokenReservation,
    TopUp,
)
from billing.periods import allowance_window, month_bounds
from console.errors import NotFound


@dataclass(frozen=True)
class QuotaStatus:
    """What a tenant may still spend right now, and when its allowance resets."""

    plan_code: str
    allowance_tokens: int
    allowance_remaining: int
    topup_remaining: int
    remaining: int
    reserved: int
    used: int
    period_start: dt.datetime
    resets_at: dt.datetime
    overage_allowed: bool


def quota_get(*, tenant: Tenant, now: dt.datetime | None = None) -> QuotaStatus:
    """The tenant's balance; a window that has lapsed reads as the fresh one it will lazily open."""
    now = now or timezone.now()
    plan = tenant.plan
    account = BillingAccount.objects.filter(tenant_id=tenant.pk).first()
    if account is None or account.window_end is None or now >= account.window_end:
        start, end = allowance_window(period=plan.allowance_period, now=now, tz=tenant.tz)
        allowance_tokens = allowance_remaining = int(plan.allowance_tokens)
    else:
        start, end = account.window_start, account.window_end
        allowance_tokens, allowance_remaining = int(account.allowance_tokens), int(account.allowance_remaining)
    topup_remaining = (
        TopUp.objects.filter(tenant_id=tenant.pk, expires_at__gt=now, remaining__gt=0).aggregate(s=Sum("remaining"))[
            "s"
        ]
        or 0
    )
    reserved = (
        TokenReservation.objects.filter(tenant_id=tenant.pk, status=ReservationStatus.OPEN).aggregate(s=Sum("tokens"))[
            "s"
        ]
        or 0
    )
    return QuotaStatus(
        plan_code=plan.code,
        allowance_tokens=allowance_tokens,
        allowance_remaining=allowance_remaining,
        topup_remaining=int(topup_remaining),
        remaining=allowance_remaining + int(topup_remaining),
        reserved=int(reserved),
        used=max(0, allowance_tokens - allowance_remaining),
        period_start=start,
        resets_at=end,
        overage_allowed=plan.overage_price_per_1k is not None,
    )


# --- Invoices ----------------------------------------------------------------------------


def invoice_get_for_user(*, user, invoice_id: int) -> Invoice:
    """The invoice if ``user`` is staff or a member of its tenant; NotFound otherwise (no leak)."""
    qs = Invoice.objects.select_related("tenant").prefetch_related("lines")
    if not (user.is_authenticated and user.is_staff):
        qs = qs.filter(tenant__memberships__user_id=getattr(user, "pk", None))
    invoice = qs.filter(pk=invoice_id).first()
    if invoice is None:
        raise NotFound("There is no such invoice.", code="invoice_not_found")
    return invoice


def invoice_list_for_tenant(*, tenant: Tenant) -> list[Invoice]:
    return list(Invoice.objects.filter(tenant_id=tenant.pk).order_by("-period_start"))


# --- Ledger-derived balances (what billing_reconcile compares the counters with) ----------


def ledger_balances(*, tenant: Tenant) -> dict:
    """Balances re-derived from ledger rows alone."""
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


# --- Usage and unit economics ------------------------------------------------------------
#
# GPU cost = recorded GPU-seconds / 3600 x the hourly cost of the node's GPU model. A CPU host
# (no GPU model) costs nothing here; an unknown model is priced at the default (A10) rate.
# Revenue for a month = the tenant's invoice total when one exists (void counts 0), else the
# live line items the invoice would carry. Per node, each tenant's revenue is split by its
# share of tokens served on that node.

DEFAULT_GPU_MODEL = "A10"


def usage_by_day(*, tenant: Tenant, days: int = 30, now: dt.datetime | None = None) -> list[dict]:
    """Settled tokens, jobs and GPU-seconds per local day for the last ``days`` days (zero-filled)."""
    days = max(1, min(int(days), 366))
    now = now or timezone.now()
    tz = tenant.tz
    today = now.astimezone(tz).date()
    first = today - dt.timedelta(days=days - 1)
    start = dt.datetime.combine(first, dt.time(0), tzinfo=tz)
    rows = (
        TokenReservation.objects.filter(tenant_id=tenant.pk, status=ReservationStatus.SETTLED, settled_at__gte=start)
        .annotate(day=TruncDate("settled_at", tzinfo=tz))
        .values("day")
        .annotate(tokens=Sum("tokens"), jobs=Count("id"), gpu_seconds=Sum("gpu_seconds"))
    )
    by_day = {r["day"]: r for r in rows}
    out = []
    for i in range(days):
        day = first + dt.timedelta(days=i)
        r = by_day.get(day, {})
        out.append(
            {
                "day": day,
                "tokens": int(r.get("tokens") or 0),
                "jobs": int(r.get("jobs") or 0),
                "gpu_seconds": float(r.get("gpu_seconds") or 0.0),
            }
        )
    return out


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


def gpu_hours_estimate(*, tokens: int, gpu_model: str = DEFAULT_GPU_MODEL) -> Decimal:
    """Expected GPU-hours for ``tokens`` from the model's throughput (A10: 1e6 tokens ~ 1.2 h)."""
    rates = gpu_cost_rates()
    rate = rates.get(gpu_model) or rates.get(DEFAULT_GPU_MODEL)
    per_hour = rate.tokens_per_gpu_hour if rate else 833_333
    return Decimal(tokens) / Decimal(per_hour)


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
    from billing.services import invoice_lines_compute  # computing lines is read-only

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
        first = (first - dt.timedelta(days=1)).replace(day=1)
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
