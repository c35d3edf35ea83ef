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
from billing.models import BillingAccount, CustomFee, Invoice, InvoiceLine, Tenant
from billing.payments import payment_provider_get
from billing.periods import billing_month_window, month_bounds
from billing.pricing import CENT
from billing.selectors.invoices import invoice_lines_compute, invoice_lines_compute_many
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
        invoice.amount_prepaid = sum((line["amount"] for line in lines if line["prepaid_by_id"]), Decimal("0.00"))
        invoice.save(update_fields=["currency", "total", "amount_prepaid"])
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
    """finalized -> paid, charging what is due (the total less lines paid at purchase, such as
    top-up packs) through the payment provider; nothing due: no call. A suspended tenant
    can still pay."""
    with transaction.atomic():
        invoice = _invoice_lock(invoice_id)
        if invoice.status != InvoiceStatus.FINALIZED:
            raise Conflict(
                f"Only a finalized invoice can be paid; {invoice.number} is {invoice.status}.",
                code="invalid_invoice_state",
            )
    payment = None
    due = invoice.amount_due
    if due > 0:
        provider = provider or payment_provider_get()
        key = f"invoice:{invoice.pk}"
        result = provider.charge(
            tenant_id=invoice.tenant_id,
            amount=due,
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
        if due > 0:
            payment, _ = payment_record(
                idempotency_key=f"invoice:{invoice.pk}",
                tenant_id=invoice.tenant_id,
                provider=provider,
                result=result,
                amount=due,
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


CLOSE_BATCH = 500


def billing_period_close(
    *, period_start: dt.date, finalize: bool = True, now=None, progress=None, batch_size: int = CLOSE_BATCH
) -> dict:
    """Build (and finalize) every tenant's invoice for a month that has ended in its time zone.

    Suspended tenants are closed too: what they used before the suspension is still owed.
    Idempotent: tenants whose invoice is already finalized are skipped, drafts are rebuilt.
    Due downgrades are applied first. ``progress`` is an optional callable per tenant (CLI bar).

    In batches of ``batch_size`` tenants, one transaction each: their accounts locked (in
    tenant order, the first lock as everywhere, so a concurrent fee or top-up waits), their
    lines computed in a fixed number of queries (``invoice_lines_compute_many``), invoices
    and lines bulk-inserted, then finalized in one UPDATE: a few dozen statements per batch
    instead of a dozen per tenant. The lines are exactly ``invoice_draft_build``'s.
    """
    first, next_first = month_bounds(period_start)
    now = now or timezone.now()
    counts = {"finalized": 0, "drafted": 0, "skipped": 0, "not_over": 0}
    tenants = list(Tenant.objects.select_related("plan").order_by("pk"))
    due = []
    for tenant in tenants:
        if now < dt.datetime.combine(next_first, dt.time(0), tzinfo=tenant.tz):
            counts["not_over"] += 1
            if progress is not None:
                progress(tenant)
        else:
            due.append(tenant)
    downgrades = set(
        BillingAccount.objects.filter(pending_plan__isnull=False, pending_plan_at__lte=now).values_list(
            "tenant_id", flat=True
        )
    )
    if downgrades:
        for tenant in due:
            if tenant.pk in downgrades:
                account_window_ensure(tenant=tenant, now=now)
        plans = dict(Tenant.objects.filter(pk__in=downgrades).values_list("pk", "plan_id"))
        for tenant in due:
            if tenant.pk in plans and tenant.plan_id != plans[tenant.pk]:
                tenant.refresh_from_db()
    for i in range(0, len(due), max(1, batch_size)):
        batch = due[i : i + batch_size]
        for key, n in _period_close_batch(
            batch, first=first, next_first=next_first, finalize=finalize, now=now
        ).items():
            counts[key] += n
        if progress is not None:
            for tenant in batch:
                progress(tenant)
    return counts


def _period_close_batch(batch: list[Tenant], *, first, next_first, finalize: bool, now) -> dict:
    counts = {"finalized": 0, "drafted": 0, "skipped": 0}
    ids = [t.pk for t in batch]
    with transaction.atomic():
        list(BillingAccount.objects.select_for_update().filter(tenant_id__in=ids).order_by("tenant_id").values("pk"))
        existing = {
            inv.tenant_id: inv
            for inv in Invoice.objects.select_for_update().filter(tenant_id__in=ids, period_start=first)
        }
        open_tenants = [t for t in batch if t.pk not in existing or existing[t.pk].status == InvoiceStatus.DRAFT]
        counts["skipped"] = len(batch) - len(open_tenants)
        months = invoice_lines_compute_many(tenants=open_tenants, period_start=first, only_these=True)
        drafts = [existing[t.pk] for t in open_tenants if t.pk in existing]
        if drafts:
            InvoiceLine.objects.filter(invoice__in=drafts).delete()
        new = [
            Invoice(
                tenant=t,
                number=_invoice_number(t, first),
                period_start=first,
                period_end=next_first,
                currency=months[t.pk].currency,
                created_at=now,
            )
            for t in open_tenants
            if t.pk not in existing
        ]
        Invoice.objects.bulk_create(new)
        invoices = {inv.tenant_id: inv for inv in [*drafts, *new]}
        lines = []
        for tenant in open_tenants:
            invoice, month = invoices[tenant.pk], months[tenant.pk]
            lines.extend(InvoiceLine(invoice=invoice, position=n, **line) for n, line in enumerate(month.lines))
            invoice.currency = month.currency
            invoice.total = sum((line["amount"] for line in month.lines), Decimal("0.00"))
            invoice.amount_prepaid = sum(
                (line["amount"] for line in month.lines if line["prepaid_by_id"]), Decimal("0.00")
            )
        InvoiceLine.objects.bulk_create(lines, batch_size=2000)
        Invoice.objects.bulk_update(list(invoices.values()), ["currency", "total", "amount_prepaid"], batch_size=1000)
        if finalize and invoices:
            Invoice.objects.filter(pk__in=[inv.pk for inv in invoices.values()], status=InvoiceStatus.DRAFT).update(
                status=InvoiceStatus.FINALIZED, finalized_at=now
            )
            counts["finalized"] = len(invoices)
        else:
            counts["drafted"] = len(invoices)
    return counts
