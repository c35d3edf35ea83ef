"""Invoices: drafts built from the month's line items, finalize -> paid or void, custom fees, period close.

Money is rounded once per line (``billing.selectors.invoices.invoice_lines_compute``); the
invoice total is the sum of those rounded amounts.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django.db import transaction
from django.utils import timezone

from billing.choices import InvoiceStatus
from billing.errors import InvalidAmount, InvoiceImmutable, PaymentFailed
from billing.models import CustomFee, Invoice, InvoiceLine, Tenant
from billing.payments import payment_provider_get
from billing.periods import billing_month_window, month_bounds
from billing.pricing import CENT
from billing.selectors.invoices import invoice_lines_compute
from billing.services._accounts import account_lock, payment_record
from billing.services.quota import account_window_ensure
from console.errors import Conflict, NotFound, VoxfleetError


def _invoice_number(tenant: Tenant, period_start: dt.date) -> str:
    return f"VF-{period_start:%Y%m}-{tenant.pk:06d}"


def invoice_draft_build(*, tenant: Tenant, period_start: dt.date) -> Invoice:
    """Create or refresh the draft invoice for a month; a finalized one is returned untouched."""
    first, next_first = month_bounds(period_start)
    with transaction.atomic():
        account_lock(tenant.pk)  # serialises concurrent closers of the same tenant
        invoice = Invoice.objects.select_for_update().filter(tenant_id=tenant.pk, period_start=first).first()
        if invoice is not None and invoice.status != InvoiceStatus.DRAFT:
            return invoice
        currency, lines = invoice_lines_compute(tenant=tenant, period_start=first)
        if invoice is None:
            invoice = Invoice.objects.create(
                tenant=tenant,
                number=_invoice_number(tenant, first),
                period_start=first,
                period_end=next_first,
                currency=currency,
            )
        else:
            invoice.lines.all().delete()
        InvoiceLine.objects.bulk_create(
            [InvoiceLine(invoice=invoice, position=i, **line) for i, line in enumerate(lines)]
        )
        invoice.currency = currency
        invoice.total = sum((line["amount"] for line in lines), Decimal("0.00"))
        invoice.save(update_fields=["currency", "total"])
        return invoice


def invoice_draft_refresh(*, tenant: Tenant, now: dt.datetime | None = None) -> Invoice:
    """Rebuild the draft of the tenant's current month (in its time zone), so a charge made
    just now (an upgrade's proration, a top-up) shows on it at once."""
    month_start, _ = billing_month_window(now=now or timezone.now(), tz=tenant.tz)
    return invoice_draft_build(tenant=tenant, period_start=month_start.date())


def _invoice_lock(invoice_id: int) -> Invoice:
    invoice = Invoice.objects.select_for_update().filter(pk=invoice_id).first()
    if invoice is None:
        raise NotFound(f"There is no invoice {invoice_id}.", code="invoice_not_found")
    return invoice


def invoice_finalize(*, invoice_id: int, now=None) -> Invoice:
    """draft -> finalized: lines and amounts are frozen from here on."""
    with transaction.atomic():
        invoice = _invoice_lock(invoice_id)
        if invoice.status != InvoiceStatus.DRAFT:
            raise InvoiceImmutable(f"Invoice {invoice.number} is already {invoice.status}.")
        invoice.status = InvoiceStatus.FINALIZED
        invoice.finalized_at = now or timezone.now()
        invoice.save(update_fields=["status", "finalized_at"])
        return invoice


def invoice_mark_paid(*, invoice_id: int, provider=None, now=None) -> Invoice:
    """finalized -> paid, charging the total through the payment provider (nothing to charge: no call)."""
    with transaction.atomic():
        invoice = _invoice_lock(invoice_id)
        if invoice.status != InvoiceStatus.FINALIZED:
            raise Conflict(
                f"Only a finalized invoice can be paid; {invoice.number} is {invoice.status}.",
                code="invalid_invoice_state",
            )
    payment = None
    if invoice.total > 0:
        provider = provider or payment_provider_get()
        key = f"invoice:{invoice.pk}"
        result = provider.charge(
            tenant_id=invoice.tenant_id,
            amount=invoice.total,
            currency=invoice.currency,
            description=f"Invoice {invoice.number}",
            idempotency_key=key,
        )
        if not result.ok:
            raise PaymentFailed(f"The payment for invoice {invoice.number} was declined: {result.message}.")
    now = now or timezone.now()
    with transaction.atomic():
        invoice = _invoice_lock(invoice_id)
        if invoice.status != InvoiceStatus.FINALIZED:
            raise InvoiceImmutable(f"Invoice {invoice.number} is already {invoice.status}.")
        if invoice.total > 0:
            payment, _ = payment_record(
                idempotency_key=f"invoice:{invoice.pk}",
                tenant_id=invoice.tenant_id,
                provider=provider,
                result=result,
                amount=invoice.total,
                currency=invoice.currency,
                purpose=f"invoice {invoice.number}",
                now=now,
            )
        invoice.status = InvoiceStatus.PAID
        invoice.paid_at = now
        invoice.payment = payment
        invoice.save(update_fields=["status", "paid_at", "payment"])
        return invoice


def invoice_void(*, invoice_id: int, reason: str, now=None) -> Invoice:
    """draft or finalized -> void (kept for the record; a paid invoice is refunded, not voided)."""
    if not reason.strip():
        raise VoxfleetError("Voiding an invoice needs a reason.", code="reason_required")
    with transaction.atomic():
        invoice = _invoice_lock(invoice_id)
        if invoice.status not in (InvoiceStatus.DRAFT, InvoiceStatus.FINALIZED):
            raise InvoiceImmutable(f"Invoice {invoice.number} is {invoice.status} and cannot be voided.")
        invoice.status = InvoiceStatus.VOID
        invoice.voided_at = now or timezone.now()
        invoice.void_reason = reason[:255]
        invoice.save(update_fields=["status", "voided_at", "void_reason"])
        return invoice


def custom_fee_add(*, tenant: Tenant, description: str, amount, period_month: dt.date, currency: str = "") -> CustomFee:
    """A one-off fee for a month; refused once that month's invoice is finalized."""
    try:
        amount = Decimal(str(amount))
    except InvalidOperation:
        raise InvalidAmount(f"A fee must be a decimal amount, got {amount!r}.") from None
    if not amount.is_finite() or amount <= 0:
        raise InvalidAmount(f"A fee must be a positive amount, got {amount}.")
    if not description.strip():
        raise VoxfleetError("A fee needs a description.", code="description_required")
    first, _ = month_bounds(period_month)
    with transaction.atomic():
        account_lock(tenant.pk)
        invoice = Invoice.objects.filter(tenant_id=tenant.pk, period_start=first).first()
        if invoice is not None and invoice.status != InvoiceStatus.DRAFT:
            raise InvoiceImmutable(f"Invoice {invoice.number} for {first:%B %Y} is {invoice.status}; bill it later.")
        return CustomFee.objects.create(
            tenant=tenant,
            description=description[:255],
            amount=amount.quantize(CENT, ROUND_HALF_UP),
            currency=currency or tenant.plan.currency,
            period_month=first,
        )


def billing_period_close(*, period_start: dt.date, finalize: bool = True, now=None, progress=None) -> dict:
    """Build (and finalize) every active tenant's invoice for a month that has ended in its time zone.

    Idempotent: tenants whose invoice is already finalized are skipped, drafts are rebuilt.
    Due downgrades are applied first. ``progress`` is an optional callable per tenant (CLI bar).
    """
    first, next_first = month_bounds(period_start)
    now = now or timezone.now()
    counts = {"finalized": 0, "drafted": 0, "skipped": 0, "not_over": 0}
    for tenant in Tenant.objects.filter(is_active=True).select_related("plan").order_by("pk"):
        if now < dt.datetime.combine(next_first, dt.time(0), tzinfo=tenant.tz):
            counts["not_over"] += 1
        else:
            account_window_ensure(tenant=tenant, now=now)
            invoice = invoice_draft_build(tenant=tenant, period_start=first)
            if invoice.status != InvoiceStatus.DRAFT:
                counts["skipped"] += 1
            elif finalize:
                invoice_finalize(invoice_id=invoice.pk, now=now)
                counts["finalized"] += 1
            else:
                counts["drafted"] += 1
        if progress is not None:
            progress(tenant)
    return counts
