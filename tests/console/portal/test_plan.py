"""The plan page: upgrade at once, downgrade at month end, top-up packs, invoices."""

from __future__ import annotations

import pytest

from billing.models import Invoice, PlanChange, TopUp
from billing.selectors import quota_get


@pytest.mark.django_db
def test_plan_page_explains_what_changes_and_when(owner_client):
    body = owner_client.get("/plan/").content.decode()
    assert "Upgrade to Pro" in body
    assert "Takes effect <strong>now</strong>" in body
    assert "Top-up packs come with the Pro plan" in body


@pytest.mark.django_db
def test_upgrade_applies_now_and_puts_the_charge_on_the_invoice(owner_client, owner_tenant):
    r = owner_client.post("/plan/change", {"plan": "pro"}, follow=True)
    assert "You are now on the Pro plan" in r.content.decode()
    owner_tenant.refresh_from_db()
    assert owner_tenant.plan.code == "pro"
    invoice = Invoice.objects.get(tenant=owner_tenant)
    assert invoice.lines.filter(kind="proration").exists()
    body = owner_client.get("/invoices/").content.decode()
    assert invoice.number in body and f"/invoices/{invoice.pk}.pdf" in body


@pytest.mark.django_db
def test_owner_cannot_self_upgrade_to_the_contract_plan(owner_client, owner_tenant):
    r = owner_client.post("/plan/change", {"plan": "enterprise"}, follow=True)
    assert "arranged by contract" in r.content.decode()
    owner_tenant.refresh_from_db()
    assert owner_tenant.plan.code == "free"
    assert not Invoice.objects.filter(tenant=owner_tenant).exists()


@pytest.mark.django_db
def test_downgrade_is_scheduled_for_month_end_and_can_be_cancelled(make_tenant, client):
    tenant = make_tenant("pro")
    client.force_login(tenant.test_owner)
    r = client.post("/plan/change", {"plan": "free"}, follow=True)
    body = r.content.decode()
    assert "Your plan changes to Free on" in body
    tenant.refresh_from_db()
    assert tenant.plan.code == "pro"
    assert PlanChange.objects.filter(tenant=tenant, kind="downgrade", cancelled_at__isnull=True).count() == 1
    r = client.post("/plan/change", {"plan": "pro"}, follow=True)
    assert "is cancelled" in r.content.decode()
    assert PlanChange.objects.filter(tenant=tenant, kind="downgrade", cancelled_at__isnull=True).count() == 0


@pytest.mark.django_db
def test_topup_purchase_adds_tokens_once_per_key(make_tenant, client):
    tenant = make_tenant("pro")
    client.force_login(tenant.test_owner)
    before = quota_get(tenant=tenant).remaining
    r = client.post("/plan/topup", {"pack": "topup-10k", "idempotency_key": "abc-topup-10k"}, follow=True)
    assert "10,000 tokens added" in r.content.decode()
    client.post("/plan/topup", {"pack": "topup-10k", "idempotency_key": "abc-topup-10k"})
    assert TopUp.objects.filter(tenant=tenant).count() == 1
    assert quota_get(tenant=tenant).remaining == before + 10_000


@pytest.mark.django_db
def test_free_plan_cannot_buy_topups_and_members_cannot_change_plan(owner_client, owner_tenant, teammate_client):
    r = owner_client.post("/plan/topup", {"pack": "topup-10k"}, follow=True)
    assert "not included in the Free plan" in r.content.decode()
    assert not TopUp.objects.filter(tenant=owner_tenant).exists()
    r = teammate_client.post("/plan/change", {"plan": "pro"}, follow=True)
    assert "owner can do that" in r.content.decode()
    owner_tenant.refresh_from_db()
    assert owner_tenant.plan.code == "free"


@pytest.mark.django_db
def test_outsider_cannot_download_another_tenants_invoice(owner_client, owner_tenant, outsider_client):
    owner_client.post("/plan/change", {"plan": "pro"})
    invoice = Invoice.objects.get(tenant=owner_tenant)
    assert invoice.number not in outsider_client.get("/invoices/").content.decode()
    assert outsider_client.get(f"/billing/invoices/{invoice.pk}.pdf").status_code == 404
