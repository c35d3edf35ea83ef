"""Monthly invoices: line items, states, immutability, rendering and period closing."""

import datetime as dt
import io
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from billing.errors import InvalidAmount, InvoiceImmutable
from billing.models import CustomFee, Invoice, InvoiceLine, InvoiceStatus
from billing.rendering import invoice_render_csv, invoice_render_pdf
from billing.services import (
    custom_fee_add,
    invoice_draft_build,
    invoice_finalize,
    invoice_mark_paid,
    invoice_void,
    plan_change,
    reservation_create,
    reservation_settle,
    topup_purchase,
)
from fleetagent.services import node_create

UTC = dt.UTC
MAY = dt.date(2026, 5, 1)


def _lines(invoice):
    return {line.kind: line for line in invoice.lines.all()}


def test_enterprise_invoice_has_every_line_kind(make_tenant):
    tenant = make_tenant("enterprise")
    tenant.plan.overage_price_per_1k = Decimal("0.2000")
    tenant.plan.save()
    node_create(name="ent-gpu-1", dedicated_tenant=tenant, gpu_model="A10")
    t = dt.datetime(2026, 5, 10, tzinfo=UTC)
    r = reservation_create(tenant=tenant, tokens=9_000, now=t)
    reservation_settle(reservation_id=r.pk, gpu_seconds=5400.0, node_name="ent-gpu-1", gpu_model="A10", now=t)
    shared = reservation_create(tenant=tenant, tokens=1_000, now=t)
    reservation_settle(reservation_id=shared.pk, gpu_seconds=999.0, node_name="shared-1", gpu_model="A10", now=t)
    big = reservation_create(tenant=tenant, tokens=10_000_000 - 10_000 + 2_500, now=t)  # 2,500 overage
    reservation_settle(reservation_id=big.pk, now=t)
    topup_purchase(tenant=tenant, pack_code="topup-100k", now=t)
    custom_fee_add(tenant=tenant, description="Custom voice fine-tuning", amount="1500.00", period_month=MAY)
    invoice = invoice_draft_build(tenant=tenant, period_start=dt.date(2026, 5, 17))
    assert (invoice.period_start, invoice.period_end, invoice.status) == (MAY, dt.date(2026, 6, 1), "draft")
    lines = _lines(invoice)
    assert lines["subscription"].amount == Decimal("2000.00")
    assert lines["topup"].amount == Decimal("25.00")
    # The top-up was bought with allowance left, so it is not what produced overage here:
    assert lines["overage"].quantity == Decimal("2.5") and lines["overage"].amount == Decimal("0.50")
    # Only the dedicated node's GPU time is rented: 5,400 s = 1.5 h x 2.00.
    assert lines["gpu_rental"].quantity == Decimal("1.5") and lines["gpu_rental"].amount == Decimal("3.00")
    assert lines["custom"].amount == Decimal("1500.00")
    assert invoice.total == Decimal("3528.50") and invoice.currency == "USD"


def test_proration_line_after_upgrade(make_tenant):
    tenant = make_tenant("free")
    plan_change(tenant=tenant, plan_code="pro", now=dt.datetime(2026, 5, 16, tzinfo=UTC))  # 16/31 left
    invoice = invoice_draft_build(tenant=tenant, period_start=MAY)
    lines = _lines(invoice)
    assert "subscription" not in lines  # on Free when May began
    assert lines["proration"].amount == Decimal("14.97")
    june = invoice_draft_build(tenant=tenant, period_start=dt.date(2026, 6, 1))
    assert _lines(june)["subscription"].amount == Decimal("29.00")


def test_free_tenant_invoice_is_empty_and_zero(make_tenant):
    invoice = invoice_draft_build(tenant=make_tenant("free"), period_start=MAY)
    assert invoice.total == Decimal("0.00") and invoice.lines.count() == 0


def test_state_machine_and_immutability(make_tenant):
    tenant = make_tenant("pro")
    invoice = invoice_draft_build(tenant=tenant, period_start=MAY)
    invoice = invoice_finalize(invoice_id=invoice.pk)
    assert invoice.status == InvoiceStatus.FINALIZED and invoice.finalized_at
    with pytest.raises(InvoiceImmutable):
        invoice_finalize(invoice_id=invoice.pk)
    # Rebuilding a finalized invoice returns it untouched.
    custom_fee_total_before = invoice.total
    assert invoice_draft_build(tenant=tenant, period_start=MAY).total == custom_fee_total_before
    # Model-level guards.
    invoice.total = Decimal("1.00")
    with pytest.raises(InvoiceImmutable):
        invoice.save()
    line = invoice.lines.first()
    line.amount = Decimal("0.01")
    with pytest.raises(InvoiceImmutable):
        line.save()
    with pytest.raises(InvoiceImmutable):
        line.delete()
    with pytest.raises(InvoiceImmutable):
        InvoiceLine.objects.create(
            invoice=invoice, kind="custom", description="sneaky", quantity=1, unit_price=1, amount=1
        )
    with pytest.raises(InvoiceImmutable):
        custom_fee_add(tenant=tenant, description="late fee", amount="5.00", period_month=MAY)
    assert CustomFee.objects.count() == 0
    invoice = Invoice.objects.get(pk=invoice.pk)
    assert invoice.total == Decimal("29.00") and invoice.lines.count() == 1
    paid = invoice_mark_paid(invoice_id=invoice.pk)
    assert paid.status == InvoiceStatus.PAID and paid.payment.amount == Decimal("29.00")
    with pytest.raises(InvoiceImmutable):
        invoice_void(invoice_id=invoice.pk, reason="oops")
    with pytest.raises(InvoiceImmutable):
        invoice.delete()


def test_void_from_finalized_and_pay_void_refused(make_tenant):
    from console.errors import Conflict

    tenant = make_tenant("pro")
    invoice = invoice_finalize(invoice_id=invoice_draft_build(tenant=tenant, period_start=MAY).pk)
    voided = invoice_void(invoice_id=invoice.pk, reason="duplicate")
    assert voided.status == InvoiceStatus.VOID and voided.void_reason == "duplicate"
    with pytest.raises(Conflict):
        invoice_mark_paid(invoice_id=invoice.pk)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_database_refuses_edits_to_finalized_invoices_on_postgresql(make_tenant):
    if connection.vendor != "postgresql":
        pytest.skip("invoice triggers are PostgreSQL-only; SQLite relies on the model guards")
    tenant = make_tenant("pro")
    invoice = invoice_finalize(invoice_id=invoice_draft_build(tenant=tenant, period_start=MAY).pk)
    with pytest.raises(DatabaseError), transaction.atomic():
        Invoice.objects.filter(pk=invoice.pk).update(total=Decimal("0.01"))
    with pytest.raises(DatabaseError), transaction.atomic():
        InvoiceLine.objects.filter(invoice=invoice).update(amount=Decimal("0.01"))
    with pytest.raises(DatabaseError), transaction.atomic():
        InvoiceLine.objects.filter(invoice=invoice).delete()
    assert Invoice.objects.get(pk=invoice.pk).total == Decimal("29.00")


@pytest.mark.parametrize("amount", ["0", "-5.00", "NaN", "Infinity", "twelve"])
def test_custom_fee_bad_amounts(make_tenant, amount):
    with pytest.raises(InvalidAmount):
        custom_fee_add(tenant=make_tenant("enterprise"), description="x", amount=amount, period_month=MAY)
    assert CustomFee.objects.count() == 0


def test_csv_and_pdf_render(make_tenant):
    tenant = make_tenant("enterprise", name="声音科技 Ltd")
    custom_fee_add(tenant=tenant, description="定制开发 custom work", amount="10.50", period_month=MAY)
    invoice = invoice_draft_build(tenant=tenant, period_start=MAY)
    text = invoice_render_csv(invoice)
    assert invoice.number in text and "声音科技 Ltd" in text
    assert "subscription" in text and "2000.00" in text and "10.50" in text
    assert text.strip().splitlines()[-3:] == [
        "total,,,,2010.50,",
        "paid_at_purchase,,,,0.00,",
        "amount_due,,,,2010.50,",
    ]
    pdf = invoice_render_pdf(invoice)
    assert pdf.startswith(b"%PDF-") and len(pdf) > 1000


def test_close_period_command_is_idempotent(make_tenant):
    pro = make_tenant("pro")
    make_tenant("free")
    out, err = io.StringIO(), io.StringIO()
    call_command("billing_close_period", period="2026-05", stdout=out, stderr=err)
    assert "finalized 2" in out.getvalue()
    assert "closing 2026-05" in err.getvalue()  # tqdm's bar goes to stderr
    first = Invoice.objects.get(tenant=pro)
    assert first.status == InvoiceStatus.FINALIZED and first.total == Decimal("29.00")
    out = io.StringIO()
    call_command("billing_close_period", period="2026-05", stdout=out, stderr=io.StringIO())
    assert "finalized 0" in out.getvalue() and "already closed 2" in out.getvalue()
    assert Invoice.objects.count() == 2


def test_close_period_skips_months_not_over(make_tenant):
    from django.utils import timezone

    from billing.services import billing_period_close

    make_tenant("pro")
    this_month = timezone.now().date().replace(day=1)
    counts = billing_period_close(period_start=this_month)
    assert counts["not_over"] == 1 and Invoice.objects.count() == 0


def test_close_period_bad_argument(db):
    from django.core.management import CommandError

    with pytest.raises(CommandError):
        call_command("billing_close_period", period="May 2026")


def test_beat_task_closes_previous_month(make_tenant):
    from django.conf import settings

    from billing.tasks import close_previous_period

    make_tenant("pro")
    assert settings.CELERY_BEAT_SCHEDULE["billing-close-period"]["task"] == "billing.close_previous_period"
    counts = close_previous_period()
    assert counts["finalized"] == 1
    assert close_previous_period()["skipped"] == 1


def test_batched_close_writes_exactly_the_draft_builders_invoices(make_tenant):
    """billing_period_close writes in batches; each invoice is what invoice_draft_build would write."""
    from billing.selectors import invoice_lines_compute
    from billing.services import billing_period_close

    t = dt.datetime(2026, 5, 12, tzinfo=UTC)
    tenants = [make_tenant(plan) for plan in ("pro", "free", "enterprise", "pro", "pro")]
    topup_purchase(tenant=tenants[0], pack_code="topup-10k", now=t)
    custom_fee_add(tenant=tenants[2], description="setup", amount="99.00", period_month=MAY)
    invoice_draft_build(tenant=tenants[3], period_start=MAY)  # an existing draft is rebuilt
    finalized = invoice_draft_build(tenant=tenants[4], period_start=MAY)
    invoice_finalize(invoice_id=finalized.pk)
    counts = billing_period_close(period_start=MAY, now=dt.datetime(2026, 6, 2, tzinfo=UTC), batch_size=2)
    assert counts == {"finalized": 4, "drafted": 0, "skipped": 1, "not_over": 0}
    for tenant in tenants:
        invoice = Invoice.objects.get(tenant=tenant, period_start=MAY)
        currency, lines = invoice_lines_compute(tenant=tenant, period_start=MAY)
        stored = [
            (x.kind, x.description, x.quantity, x.unit_price, x.amount, x.prepaid_by_id) for x in invoice.lines.all()
        ]
        expected = [
            (x["kind"], x["description"], x["quantity"], x["unit_price"], x["amount"], x["prepaid_by_id"])
            for x in lines
        ]
        assert stored == expected and invoice.status == "finalized" and invoice.currency == currency
        assert invoice.total == sum((x["amount"] for x in lines), Decimal("0.00"))
    assert Invoice.objects.get(tenant=tenants[0], period_start=MAY).amount_prepaid == Decimal("3.00")
