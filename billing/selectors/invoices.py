"""Invoice reads: one invoice for a user who may see it, a tenant's invoices, and the line items a month owes."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

from django.db.models import Count, Sum

from billing.choices import InvoiceLineKind, PlanChangeKind, ReservationStatus
from billing.models import BillingAccount, CustomFee, Invoice, PlanChange, Tenant, TokenReservation, TopUp
from billing.periods import month_bounds
from billing.pricing import CENT
from console.errors import NotFound, VoxfleetError

if TYPE_CHECKING:
    from billing.models import Plan


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
    """The tenant's invoices, newest month first, with their lines (the portal's invoice page)."""
    return list(Invoice.objects.filter(tenant_id=tenant.pk).prefetch_related("lines").order_by("-period_start"))


# --- Line items ----------------------------------------------------------------------------
#
# Money is rounded once: each line's amount = quantity x unit price, rounded half-up to
# cents. The invoice total is the sum of those rounded amounts.
#
# A month's lines are a pure function (``_lines_from_facts``) of the facts the month holds
# (``MonthFacts``). One tenant's facts come from a handful of queries
# (``invoice_lines_compute``, for its invoice); every tenant's at once from a number of
# queries that depends on how many time zones the tenants live in, never on how many
# tenants or jobs there are (``invoice_lines_compute_many``, for the staff economics).


@dataclass
class MonthFacts:
    """What a tenant's month holds that its invoice lines are made of."""

    plan: Plan  # in effect when the month began
    upgrades: list = field(default_factory=list)  # PlanChange rows applied in the month, in order
    topups: list = field(default_factory=list)  # TopUp rows bought in the month with a price
    overage_tokens: int = 0
    dedicated_nodes: list[str] = field(default_factory=list)
    rental_rate: Decimal | None = None  # the account's contract rate, None: the plan's
    seconds_by_node: dict[str, float] = field(default_factory=dict)
    fees: list = field(default_factory=list)


def month_range(*, tz, period_start: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of the calendar month of ``period_start`` in ``tz``."""
    first, next_first = month_bounds(period_start)
    return dt.datetime.combine(first, dt.time(0), tzinfo=tz), dt.datetime.combine(next_first, dt.time(0), tzinfo=tz)


def _plan_replayed(changes: list, when: dt.datetime, current: Plan) -> Plan:
    """The plan in effect at ``when`` from a tenant's applied changes (sorted by applied_at, id)."""
    before = [c for c in changes if c.applied_at <= when]
    if before:
        return before[-1].to_plan
    after = [c for c in changes if c.applied_at > when]
    return after[0].from_plan if after else current


def _line(kind: str, description: str, quantity, unit_price, *, prepaid_by_id: int | None = None) -> dict:
    quantity, unit_price = Decimal(quantity), Decimal(unit_price)
    amount = (quantity * unit_price).quantize(CENT, ROUND_HALF_UP)
    return {
        "kind": kind,
        "description": description,
        "quantity": quantity,
        "unit_price": unit_price,
        "amount": amount,
        "prepaid_by_id": prepaid_by_id,
    }


def _lines_from_facts(*, tenant: Tenant, period_start: dt.date, facts: MonthFacts) -> tuple[str, list[dict]]:
    first, _ = month_bounds(period_start)
    tz = tenant.tz
    plan = facts.plan
    currency = plan.currency
    lines = []
    if plan.monthly_price > 0:
        lines.append(_line(InvoiceLineKind.SUBSCRIPTION, f"{plan.name} plan, {first:%B %Y}", 1, plan.monthly_price))
    for change in facts.upgrades:
        if change.prorated_amount:
            lines.append(
                _line(
                    InvoiceLineKind.PRORATION,
                    f"Upgrade {change.from_plan.name} -> {change.to_plan.name} on {change.applied_at.astimezone(tz):%Y-%m-%d}, prorated",
                    1,
                    change.prorated_amount,
                )
            )
    # A pack bought through the payment provider was paid when bought: listed, not charged again.
    for topup in facts.topups:
        name = topup.pack.name if topup.pack else f"{topup.tokens} tokens"
        paid = " (paid at purchase)" if topup.payment_id else ""
        lines.append(
            _line(InvoiceLineKind.TOPUP, f"Top-up pack {name}{paid}", 1, topup.price, prepaid_by_id=topup.payment_id)
        )
    if facts.overage_tokens and plan.overage_price_per_1k:
        lines.append(
            _line(
                InvoiceLineKind.OVERAGE,
                f"Overage: {facts.overage_tokens:,} tokens past allowance and top-ups",
                Decimal(facts.overage_tokens) / 1000,
                plan.overage_price_per_1k,
            )
        )
    if facts.dedicated_nodes:
        rate = facts.rental_rate or plan.gpu_rental_price_per_hour
        dedicated = set(facts.dedicated_nodes)
        seconds = sum(v for k, v in sorted(facts.seconds_by_node.items()) if k in dedicated)
        hours = (Decimal(str(seconds)) / 3600).quantize(Decimal("0.0001"), ROUND_HALF_UP)
        if hours > 0 and rate > 0:
            lines.append(
                _line(
                    InvoiceLineKind.GPU_RENTAL,
                    f"Dedicated GPU rental ({', '.join(sorted(dedicated))}): {hours} GPU-hours",
                    hours,
                    rate,
                )
            )
    for fee in facts.fees:
        if fee.currency != currency:
            raise VoxfleetError(
                f"Custom fee {fee.description!r} is in {fee.currency}, the invoice in {currency}.",
                code="currency_mismatch",
            )
        lines.append(_line(InvoiceLineKind.CUSTOM, fee.description, 1, fee.amount))
    return currency, lines


def _settled_in(start, end):
    return TokenReservation.objects.filter(status=ReservationStatus.SETTLED, settled_at__gte=start, settled_at__lt=end)


def invoice_lines_compute(*, tenant: Tenant, period_start: dt.date) -> tuple[str, list[dict]]:
    """The currency and line items a tenant was charged for the calendar month starting
    ``period_start`` (in its time zone). Read-only: used by invoices and by the revenue selectors.

    A top-up pack bought through the payment provider was paid when it was bought: its line
    names that payment (``prepaid_by_id``), so the invoice lists it without charging it again.
    """
    first, next_first = month_bounds(period_start)
    start, end = month_range(tz=tenant.tz, period_start=first)
    changes = list(
        PlanChange.objects.filter(tenant_id=tenant.pk, applied_at__isnull=False)
        .select_related("from_plan", "to_plan")
        .order_by("applied_at", "id")
    )
    usage = (
        _settled_in(start, end)
        .filter(tenant_id=tenant.pk)
        .values("node_name")
        .annotate(overage=Sum("from_overage"), gpu_seconds=Sum("gpu_seconds"))
        .order_by()
    )
    dedicated = list(tenant.dedicated_nodes.values_list("name", flat=True))
    account = BillingAccount.objects.filter(tenant_id=tenant.pk).first() if dedicated else None
    rows = list(usage)
    facts = MonthFacts(
        plan=_plan_replayed(changes, start, tenant.plan),
        upgrades=[c for c in changes if c.kind == PlanChangeKind.UPGRADE and start <= c.applied_at < end],
        topups=list(
            TopUp.objects.filter(tenant_id=tenant.pk, purchased_at__gte=start, purchased_at__lt=end, price__gt=0)
            .select_related("pack")
            .order_by("expires_at", "id")
        ),
        overage_tokens=sum(int(r["overage"] or 0) for r in rows),
        dedicated_nodes=dedicated,
        rental_rate=account.gpu_rental_price_per_hour if account else None,
        seconds_by_node={r["node_name"]: float(r["gpu_seconds"] or 0.0) for r in rows},
        fees=list(
            CustomFee.objects.filter(
                tenant_id=tenant.pk, period_month__gte=first, period_month__lt=next_first
            ).order_by("-period_month", "id")
        ),
    )
    return _lines_from_facts(tenant=tenant, period_start=first, facts=facts)


@dataclass(frozen=True)
class TenantMonth:
    """One tenant's month for the economics: its line items and its usage per node and GPU model."""

    currency: str
    lines: list
    usage: list  # [{"node_name", "gpu_model", "tokens", "jobs", "gpu_seconds"}]


def invoice_lines_compute_many(
    *, tenants: list[Tenant], period_start: dt.date, only_these: bool = False, per_node: bool = True
) -> dict[int, TenantMonth]:
    """``invoice_lines_compute`` for many tenants at once, with their usage rows.

    Queries: one per time zone the tenants live in for usage and one for top-ups, plus a
    fixed few (plan changes, custom fees, dedicated nodes, rental rates), whatever the
    number of tenants or jobs. ``only_these``: filter every query by the tenants' ids (a
    batch of a month close) instead of reading whole time zones (every tenant, the economics).
    ``per_node=False``: usage rows per GPU model only (``node_name`` None) - one row per tenant
    rather than one per tenant and node; dedicated-node seconds come from a small query of their own.
    """
    first, next_first = month_bounds(period_start)
    by_zone: dict[str, list[Tenant]] = defaultdict(list)
    for tenant in tenants:
        by_zone[tenant.time_zone].append(tenant)
    ids = [t.pk for t in tenants]

    def mine(qs, field="tenant_id"):
        return qs.filter(**{f"{field}__in": ids}) if only_these else qs

    changes: dict[int, list] = defaultdict(list)
    for change in (
        mine(PlanChange.objects.filter(applied_at__isnull=False))
        .select_related("from_plan", "to_plan")
        .order_by("tenant_id", "applied_at", "id")
    ):
        changes[change.tenant_id].append(change)
    fees: dict[int, list] = defaultdict(list)
    for fee in mine(CustomFee.objects.filter(period_month__gte=first, period_month__lt=next_first)).order_by(
        "-period_month", "id"
    ):
        fees[fee.tenant_id].append(fee)
    dedicated: dict[int, list[str]] = defaultdict(list)
    for tenant_id, name in (
        mine(Tenant.objects.filter(dedicated_nodes__isnull=False), "pk")
        .values_list("pk", "dedicated_nodes__name")
        .order_by()
    ):
        dedicated[tenant_id].append(name)
    rates = dict(
        mine(BillingAccount.objects.filter(gpu_rental_price_per_hour__isnull=False)).values_list(
            "tenant_id", "gpu_rental_price_per_hour"
        )
    )
    usage: dict[int, list] = defaultdict(list)
    topups: dict[int, list] = defaultdict(list)
    on_dedicated: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    wanted = set(ids)
    group = ("tenant_id", "node_name", "gpu_model") if per_node else ("tenant_id", "gpu_model")
    dedicated_names = sorted({name for names in dedicated.values() for name in names})
    for zone, members in by_zone.items():
        start, end = month_range(tz=members[0].tz, period_start=first)
        zone_filter = {"tenant_id__in": [t.pk for t in members]} if only_these else {"tenant__time_zone": zone}
        for row in (
            _settled_in(start, end)
            .filter(**zone_filter)
            .values(*group)
            .annotate(
                tokens=Sum("tokens"), jobs=Count("id"), gpu_seconds=Sum("gpu_seconds"), overage=Sum("from_overage")
            )
            .order_by()
        ):
            if row["tenant_id"] in wanted:
                row.setdefault("node_name", None)
                usage[row["tenant_id"]].append(row)
        if not per_node and dedicated_names:
            for row in (
                _settled_in(start, end)
                .filter(**zone_filter, node_name__in=dedicated_names)
                .values("tenant_id", "node_name")
                .annotate(gpu_seconds=Sum("gpu_seconds"))
                .order_by()
            ):
                on_dedicated[row["tenant_id"]][row["node_name"]] += float(row["gpu_seconds"] or 0.0)
        for topup in (
            TopUp.objects.filter(**zone_filter, purchased_at__gte=start, purchased_at__lt=end, price__gt=0)
            .select_related("pack")
            .order_by("expires_at", "id")
        ):
            topups[topup.tenant_id].append(topup)
    out = {}
    for tenant in tenants:
        start, end = month_range(tz=tenant.tz, period_start=first)
        rows = usage.get(tenant.pk, [])
        seconds: dict[str, float] = defaultdict(float)
        if per_node:
            for r in rows:
                seconds[r["node_name"]] += float(r["gpu_seconds"] or 0.0)
        else:
            seconds.update(on_dedicated.get(tenant.pk, {}))
        tenant_changes = changes.get(tenant.pk, [])
        facts = MonthFacts(
            plan=_plan_replayed(tenant_changes, start, tenant.plan),
            upgrades=[c for c in tenant_changes if c.kind == PlanChangeKind.UPGRADE and start <= c.applied_at < end],
            topups=topups.get(tenant.pk, []),
            overage_tokens=sum(int(r["overage"] or 0) for r in rows),
            dedicated_nodes=dedicated.get(tenant.pk, []),
            rental_rate=rates.get(tenant.pk),
            seconds_by_node=dict(seconds),
            fees=fees.get(tenant.pk, []),
        )
        currency, lines = _lines_from_facts(tenant=tenant, period_start=first, facts=facts)
        out[tenant.pk] = TenantMonth(currency=currency, lines=lines, usage=rows)
    return out
