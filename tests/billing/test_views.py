"""Invoice downloads: staff and the tenant's members only; everyone else gets 404."""

import datetime as dt

import pytest

from billing.services import invoice_draft_build, invoice_finalize

MAY = dt.date(2026, 5, 1)


@pytest.fixture
def invoice(make_tenant):
    tenant = make_tenant("pro")
    inv = invoice_finalize(invoice_id=invoice_draft_build(tenant=tenant, period_start=MAY).pk)
    inv.test_tenant = tenant
    return inv


@pytest.mark.parametrize(
    ("fmt", "content_type", "magic"), [("pdf", "application/pdf", b"%PDF-"), ("csv", "text/csv", b"invoice,")]
)
def test_owner_downloads_own_invoice(client, invoice, fmt, content_type, magic):
    client.force_login(invoice.test_tenant.test_owner)
    response = client.get(f"/billing/invoices/{invoice.pk}.{fmt}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith(content_type)
    assert f'filename="{invoice.number}.{fmt}"' in response["Content-Disposition"]
    assert response.content.startswith(magic)


def test_teammate_downloads(client, invoice, make_member):
    client.force_login(make_member(invoice.test_tenant))
    assert client.get(f"/billing/invoices/{invoice.pk}.csv").status_code == 200


def test_outsider_gets_404(client, invoice, make_tenant):
    outsider_tenant = make_tenant("pro")
    client.force_login(outsider_tenant.test_owner)
    assert client.get(f"/billing/invoices/{invoice.pk}.pdf").status_code == 404
    assert client.get(f"/billing/invoices/{invoice.pk}.csv").status_code == 404
    assert client.get("/billing/invoices/999999.pdf").status_code == 404


def test_staff_downloads_any(client, invoice, staff_user):
    client.force_login(staff_user)
    assert client.get(f"/billing/invoices/{invoice.pk}.pdf").status_code == 200


def test_anonymous_is_sent_to_login(client, invoice):
    response = client.get(f"/billing/invoices/{invoice.pk}.pdf")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_post_not_allowed(client, invoice):
    client.force_login(invoice.test_tenant.test_owner)
    assert client.post(f"/billing/invoices/{invoice.pk}.pdf").status_code == 405
