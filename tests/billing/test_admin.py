"""The billing admin: every model listed with filters; history rows are read-only."""

import datetime as dt

import pytest
from django.apps import apps
from django.contrib import admin

from billing.models import InvoiceLine, LedgerEntry
from billing.services import invoice_draft_build, invoice_finalize, reservation_create

# Every billing model; invoice lines are edited inline on their invoice, not on a page of their own.
MODELS = [model for model in apps.get_app_config("billing").get_models() if model is not InvoiceLine]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_registered_with_filters_and_changelist_loads(admin_client, make_tenant, model):
    tenant = make_tenant("pro")
    reservation_create(tenant=tenant, tokens=5)
    invoice_draft_build(tenant=tenant, period_start=dt.date(2026, 5, 1))
    model_admin = admin.site._registry[model]
    assert model_admin.list_filter
    url = f"/admin/billing/{model._meta.model_name}/"
    assert admin_client.get(url).status_code == 200
    assert admin_client.get(url, {"q": "x"}).status_code == 200


def test_ledger_rows_are_read_only(admin_client, make_tenant):
    tenant = make_tenant("free")
    reservation_create(tenant=tenant, tokens=5)
    row = LedgerEntry.objects.filter(tenant=tenant).first()
    assert admin_client.get("/admin/billing/ledgerentry/add/").status_code == 403
    response = admin_client.post(f"/admin/billing/ledgerentry/{row.pk}/change/", {"available_delta": 999})
    assert response.status_code == 403
    assert admin_client.post(f"/admin/billing/ledgerentry/{row.pk}/delete/", {"post": "yes"}).status_code == 403
    assert LedgerEntry.objects.get(pk=row.pk).available_delta == row.available_delta


def test_finalized_invoice_lines_not_editable_in_admin(admin_client, make_tenant):
    tenant = make_tenant("pro")
    invoice = invoice_finalize(invoice_id=invoice_draft_build(tenant=tenant, period_start=dt.date(2026, 5, 1)).pk)
    response = admin_client.get(f"/admin/billing/invoice/{invoice.pk}/change/")
    assert response.status_code == 200
    assert b"lines-TOTAL_FORMS" not in response.content or b'name="lines-0-amount"' not in response.content
    response = admin_client.post(
        "/admin/billing/invoice/", {"action": "void", "_selected_action": [invoice.pk]}, follow=True
    )
    assert response.status_code == 200
    invoice.refresh_from_db()
    assert invoice.status == "void"


def test_outsider_non_staff_cannot_open_billing_admin(client, make_tenant):
    tenant = make_tenant("pro")
    client.force_login(tenant.test_owner)
    response = client.get("/admin/billing/ledgerentry/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_custom_fee_admin_form_refuses_finalized_month_and_bad_amount(admin_client, make_tenant):
    from billing.models import CustomFee

    tenant = make_tenant("enterprise")
    invoice_finalize(invoice_id=invoice_draft_build(tenant=tenant, period_start=dt.date(2026, 5, 1)).pk)
    data = {
        "tenant": tenant.pk,
        "description": "late",
        "amount": "10.00",
        "currency": "USD",
        "period_month": "2026-05-15",
        "created_at_0": "2026-05-15",
        "created_at_1": "10:00:00",
    }
    response = admin_client.post("/admin/billing/customfee/add/", data)
    assert response.status_code == 200 and b"bill it later" in response.content
    response = admin_client.post(
        "/admin/billing/customfee/add/", {**data, "period_month": "2026-06-01", "amount": "-1"}
    )
    assert response.status_code == 200 and b"positive amount" in response.content
    assert CustomFee.objects.count() == 0
    response = admin_client.post("/admin/billing/customfee/add/", {**data, "period_month": "2026-06-01"})
    assert response.status_code == 302 and CustomFee.objects.count() == 1
