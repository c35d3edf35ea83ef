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


@pytest.mark.django_db
def test_months_before_a_tenant_existed_carry_no_revenue(staff_user, make_tenant):
    import json
    import re

    make_tenant("pro", name="New Pro")
    c = Client()
    c.force_login(staff_user)
    body = c.get("/staff/").content.decode()
    fig = json.loads(re.search(r'<script id="fig_period" type="application/json">(.*?)</script>', body, re.S).group(1))
    revenue = fig["data"][0]["y"]
    assert len(revenue) == 6
    assert revenue[:-1] == [0.0] * 5 and revenue[-1] == 29.0


@pytest.mark.django_db
def test_staff_overview_query_count_is_bounded_when_cached(staff_user, make_tenant, django_assert_max_num_queries):
    for plan in ("free", "pro", "enterprise"):
        make_tenant(plan)
    c = Client()
    c.force_login(staff_user)
    assert c.get("/staff/").status_code == 200
    with django_assert_max_num_queries(8):
        assert c.get("/staff/").status_code == 200


@pytest.mark.django_db
def test_beat_warms_the_staff_figures_so_the_page_computes_nothing(
    staff_user, make_tenant, django_assert_max_num_queries
):
    from console.celery import app
    from console.portal.tasks import staff_economics_warm

    make_tenant("pro", name="Warm Pro")
    assert "portal.staff_economics_warm" in app.tasks
    staff_economics_warm()
    c = Client()
    c.force_login(staff_user)
    with django_assert_max_num_queries(8):
        r = c.get("/staff/")
    assert r.status_code == 200 and "Warm Pro" in r.content.decode()
