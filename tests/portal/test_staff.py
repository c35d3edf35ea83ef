"""The staff overview: staff only; tenants, revenue, GPU cost and margin."""

from __future__ import annotations

import pytest
from django.test import Client


@pytest.mark.django_db
def test_staff_sees_overview_with_links(staff_user, make_tenant):
    make_tenant("pro", name="Paying Pro")
    c = Client()
    c.force_login(staff_user)
    r = c.get("/staff/")
    body = r.content.decode()
    assert r.status_code == 200
    assert "Paying Pro" in body
    assert 'href="/ops/"' in body and 'href="/admin/"' in body
    assert 'id="fig_period"' in body and "vendor/plotly/plotly.min.js" in body
    # Pro's subscription is this month's revenue.
    assert "29.00" in body


@pytest.mark.django_db
def test_customers_cannot_see_staff_overview(owner_client):
    r = owner_client.get("/staff/")
    assert r.status_code == 302 and "/admin/login/" in r["Location"]


@pytest.mark.django_db
def test_staff_without_tenant_lands_on_overview(staff_user):
    c = Client()
    c.force_login(staff_user)
    r = c.get("/")
    assert r.status_code == 302 and r["Location"] == "/staff/"
