"""Invoice reads: one invoice for a user who may see it, a tenant's invoices, and the line items a month owes."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

from django.db.models import Sum

from billing.choices import InvoiceLineKind, PlanChangeKind, ReservationStatus
from billing.models import BillingAccount, CustomFee, Invoice, PlanChange, TokenReservation, TopUp
from billing.periods import month_bounds
from billing.pricing import CENT
from console.errors import NotFound, VoxfleetError

if TYPE_CHECKING:
    from billing.models import Plan, Tenant


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


def _plan_at(tenant: Tenant, when: dt.datetime) -> Plan:
    """The plan in effect at ``when``, replayed from applied plan changes."""
    before = (
        PlanChange.objects.filter(tenant_id=tenant.pk, applied_at__isnull=False, applied_at__lte=when)
        .select_related("to_plan")
        .order_by("-applied_at", "-id")
        .first()
    )
    if before is not None:
        return before.to_plan
    after = (
        PlanChange.objects.filter(tenant_id=tenant.pk, applied_at__isnull=False, applied_at__gt=when)
        .select_related("from_plan")
        .order_by("applied_at", "id")
        .first()
    )
    return after.from_plan if after is not None else tenant.plan


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


def invoice_lines_compute(*, tenant: Tenant, period_start: dt.date) -> tuple[str, list[dict]]:
    """The currency and line items a tenant was charged for the calendar month starting
    ``period_start`` (in its time zone). Read-only: used by invoices and by the revenue selectors.

    A top-up pack bought through the payment provider was paid when it was bought: its line
    names that payment (``prepaid_by_id``), so the invoice lists it without charging it again.
    """
    first, next_first = month_bounds(period_start)
    tz = tenant.tz
    start = dt.datetime.combine(first, dt.time(0), tzinfo=tz)
    end = dt.datetime.combine(next_first, dt.time(0), tzinfo=tz)
    plan = _plan_at(tenant, start)
    currency = plan.currency
    lines = []
    if plan.monthly_price > 0:
        lines.append(_line(InvoiceLineKind.SUBSCRIPTION, f"{plan.name} plan, {first:%B %Y}", 1, plan.monthly_price))
    for change in PlanChange.objects.filter(
        tenant_id=tenant.pk, kind=PlanChangeKind.UPGRADE, applied_at__gte=start, applied_at__lt=end
    ).select_related("from_plan", "to_plan"):
        if change.prorated_amount:
            lines.append(
                _line(
                    InvoiceLineKind.PRORATION,
                    f"Upgrade {change.from_plan.name} -> {change.to_plan.name} on {change.applied_at.astimezone(tz):%Y-%m-%d}, prorated",
                    1,
                    change.prorated_amount,
                )
            )
    for topup in TopUp.objects.filter(
        tenant_id=tenant.pk, purchased_at__gte=start, purchased_at__lt=end, price__gt=0
    ).select_related("pack"):
        name = topup.pack.name if topup.pack else f"{topup.tokens} tokens"
        paid = " (paid at purchase)" if topup.payment_id else ""
        lines.append(
            _line(InvoiceLineKind.TOPUP, f"Top-up pack {name}{paid}", 1, topup.price, prepaid_by_id=topup.payment_id)
        )
    settled = TokenReservation.objects.filter(
        tenant_id=tenant.pk, status=ReservationStatus.SETTLED, settled_at__gte=start, settled_at__lt=end
    )
    overage = settled.aggregate(s=Sum("from_overage"))["s"] or 0
    if overage and plan.overage_price_per_1k:
        lines.append(
            _line(
                InvoiceLineKind.OVERAGE,
                f"Overage: {overage:,} tokens past allowance and top-ups",
                Decimal(overage) / 1000,
                plan.overage_price_per_1k,
            )
        )
    dedicated = list(tenant.dedicated_nodes.values_list("name", flat=True))
    if dedicated:
        account = BillingAccount.objects.filter(tenant_id=tenant.pk).first()
        rate = (account.gpu_rental_price_per_hour if account else None) or plan.gpu_rental_price_per_hour
        seconds = settled.filter(node_name__in=dedicated).aggregate(s=Sum("gpu_seconds"))["s"] or 0.0
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
    for fee in CustomFee.objects.filter(tenant_id=tenant.pk, period_month__gte=first, period_month__lt=next_first):
        if fee.currency != currency:
            raise VoxfleetError(
                f"Custom fee {fee.description!r} is in {fee.currency}, the invoice in {currency}.",
                code="currency_mismatch",
            )
        lines.append(_line(InvoiceLineKind.CUSTOM, fee.description, 1, fee.amount))
    return currency, lines
