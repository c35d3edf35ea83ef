"""Found defects in money and tenancy (issue 12, item 1): each test failed before its fix."""

import datetime as dt
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from billing.errors import TenantSuspended
from billing.models import ApiKey, Invoice, Payment, Tenant, TopUp
from billing.rendering import invoice_render_csv
from billing.services import (
    api_key_create,
    billing_period_close,
    invoice_draft_build,
    invoice_finalize,
    invoice_mark_paid,
    plan_change,
    topup_purchase,
)

UTC = dt.UTC


def _suspend(tenant):
    Tenant.objects.filter(pk=tenant.pk).update(is_active=False)
    tenant.refresh_from_db()


def test_topup_is_on_the_invoice_as_paid_and_not_charged_again(make_tenant):
    tenant = make_tenant("pro")
    now = timezone.now()
    topup_purchase(tenant=tenant, pack_code="topup-10k", now=now)
    invoice = invoice_draft_build(tenant=tenant, period_start=now.date())
    assert invoice.total == Decimal("32.00")  # 29 subscription + 3 top-up: the month's charges
    assert invoice.amount_prepaid == Decimal("3.00")
    assert invoice.amount_due == Decimal("29.00")
    topup_line = invoice.lines.get(kind="topup")
    assert topup_line.prepaid_by_id == Payment.objects.get(purpose="top-up topup-10k").pk
    invoice_finalize(invoice_id=invoice.pk)
    invoice_mark_paid(invoice_id=invoice.pk)
    amounts = sorted(Payment.objects.filter(tenant=tenant).values_list("amount", flat=True))
    assert amounts == [Decimal("3.00"), Decimal("29.00")]  # 32.00 in all, the pack charged once
    csv = invoice_render_csv(Invoice.objects.get(pk=invoice.pk))
    assert "amount_due,,,,29.00" in csv and "paid_at_purchase,,,,3.00" in csv


def test_invoice_of_only_prepaid_lines_is_paid_without_a_charge(db):
    from billing.models import Plan
    from billing.services import tenant_create, user_create

    payg = Plan.objects.create(
        code="payg", name="Pay as you go", allowance_tokens=0, allowance_period="month", allow_topups=True
    )
    owner = user_create(username="payg", password="pw-secret-123")
    tenant = tenant_create(name="Payg Co", plan=payg, owner=owner)
    now = timezone.now()
    topup_purchase(tenant=tenant, pack_code="topup-10k", now=now)
    invoice = invoice_draft_build(tenant=tenant, period_start=now.date())
    assert (invoice.total, invoice.amount_due) == (Decimal("3.00"), Decimal("0.00"))
    invoice_finalize(invoice_id=invoice.pk)

    class NoCharge:
        name = "nocharge"

        def charge(self, **kwargs):
            raise AssertionError(f"charged {kwargs['amount']} for an invoice with nothing due")

    invoice = invoice_mark_paid(invoice_id=invoice.pk, provider=NoCharge())
    assert invoice.status == "paid" and invoice.payment is None
    assert Payment.objects.filter(tenant=tenant).count() == 1


def test_invoice_csv_prints_plain_quantities(make_tenant):
    from billing.models import InvoiceLine

    tenant = make_tenant("pro")
    invoice = invoice_draft_build(tenant=tenant, period_start=timezone.now().date())
    InvoiceLine.objects.create(
        invoice=invoice, kind="overage", description="x", quantity=Decimal("10"), unit_price="0.5", amount="5.00"
    )
    csv = invoice_render_csv(invoice)
    assert "1E+1" not in csv and "overage,x,10,0.5,5.00" in csv


def test_suspended_tenant_cannot_buy_mint_keys_or_change_plan(make_tenant):
    tenant = make_tenant("pro")
    _suspend(tenant)
    with pytest.raises(TenantSuspended):
        topup_purchase(tenant=tenant, pack_code="topup-1m")
    with pytest.raises(TenantSuspended):
        api_key_create(tenant=tenant, name="new")
    with pytest.raises(TenantSuspended):
        plan_change(tenant=tenant, plan_code="free")
    assert not Payment.objects.filter(tenant=tenant).exists()
    assert not TopUp.objects.filter(tenant=tenant).exists()
    assert ApiKey.objects.filter(tenant=tenant).count() == 1  # the fixture's, made before the suspension
    # Staff may still move a suspended tenant's plan.
    plan_change(tenant=tenant, plan_code="free", by_staff=True)


def test_suspended_tenant_refused_in_the_portal_but_reads_its_pages(make_tenant):
    tenant = make_tenant("pro")
    _suspend(tenant)
    c = Client()
    c.force_login(tenant.test_owner)
    for url in ("/", "/plan/", "/invoices/", "/keys/", "/team/"):
        assert c.get(url).status_code == 200, url
    r = c.post("/plan/topup", {"pack": "topup-1m"}, follow=True)
    assert "suspended" in r.content.decode()
    r = c.post("/keys/", {"name": "sneaky", "scopes": ["synthesize"]}, follow=True)
    assert "suspended" in r.content.decode()
    r = c.post("/plan/change", {"plan": "free"}, follow=True)
    assert "suspended" in r.content.decode()
    assert not Payment.objects.filter(tenant=tenant).exists()
    assert ApiKey.objects.filter(tenant=tenant).count() == 1
    assert not tenant.plan_changes.exists()


def test_suspended_tenants_invoice_closes_and_can_be_paid(make_tenant):
    tenant = make_tenant("pro")
    may = dt.datetime(2026, 5, 10, tzinfo=UTC)
    invoice_draft_build(tenant=tenant, period_start=may.date())
    _suspend(tenant)
    counts = billing_period_close(period_start=dt.date(2026, 5, 1), now=dt.datetime(2026, 6, 2, tzinfo=UTC))
    invoice = Invoice.objects.get(tenant=tenant, period_start=dt.date(2026, 5, 1))
    assert invoice.status == "finalized" and counts["finalized"] >= 1
    invoice = invoice_mark_paid(invoice_id=invoice.pk)
    assert invoice.status == "paid"
