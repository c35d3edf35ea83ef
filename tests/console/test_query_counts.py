"""Query counts of every list page and the staff overview do not grow with tenants or jobs.

NetBox's habit (query-count tests guard list views): each page is measured on a small data
set, then again after tenants, jobs, ledger rows, invoices and top-ups were added, and its
query count must be the same, and at most the pinned number below.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.services import (
    api_key_create,
    invoice_draft_build,
    invoice_finalize,
    plan_get,
    reservation_create,
    reservation_settle,
    tenant_create,
    topup_purchase,
    user_create,
)

# Pinned ceilings: a change that adds queries to a page shows up here.
PORTAL_PAGES = {
    "/": 16,
    "/playground/": 12,
    "/voices/": 10,
    "/keys/": 9,
    "/plan/": 14,
    "/invoices/": 10,
    "/team/": 11,
    "/alerts/": 12,
}
API_PAGES = {
    "/api/v1/jobs": 6,
    "/api/v1/jobs?limit=100": 6,
    "/api/v1/usage?days=30": 8,
    "/api/v1/quota": 6,
    "/api/v1/voices": 5,
}
# Fresh: per month, one usage and one top-up query per time zone plus a fixed few (3 zones here).
STAFF_PAGES = {"/staff/?fresh=1": 75, "/staff/": 6}
ADMIN_PAGES = {
    "/admin/billing/tenant/": 10,
    "/admin/billing/invoice/": 10,
    "/admin/billing/ledgerentry/": 10,
    "/admin/billing/tokenreservation/": 10,
    "/admin/billing/topup/": 10,
    "/admin/billing/payment/": 10,
    "/admin/billing/apikey/": 10,
    "/admin/billing/membership/": 10,
    "/admin/inference/synthesisjob/": 10,
    "/admin/billing/usagealert/": 10,
    "/admin/billing/webhookdelivery/": 10,
}


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()
    yield
    cache.clear()


class World:
    """Tenants with usage, built through the real services; ``grow`` adds more of everything."""

    def __init__(self):
        self.n = 0
        self.month = timezone.now().replace(day=1, hour=12) - dt.timedelta(days=40)
        self.node = self._node()
        self.main = self._tenant("pro", zone="Asia/Shanghai")
        # Every time zone of the larger world is here already: the economics run one query per
        # zone and month (a tenant's month is local), so zones, not tenants, set that count.
        self.grow(tenants=3, jobs=2)

    @staticmethod
    def _node():
        from fleetagent.models import Node
        from fleetagent.services import node_create

        node, _ = node_create(name="local-cpu")
        Node.objects.filter(pk=node.pk).update(state="online")
        return node

    def _tenant(self, plan: str, zone: str = "UTC"):
        self.n += 1
        owner = user_create(username=f"qc-owner-{self.n}", password="pw-secret-123", email=f"qc{self.n}@example.com")
        tenant = tenant_create(name=f"QC {self.n}", plan=plan_get(code=plan), owner=owner, time_zone=zone)
        _, tenant.test_api_key = api_key_create(tenant=tenant, name="qc")
        tenant.test_owner = owner
        return tenant

    def _usage(self, tenant, jobs: int):
        from billing.services import limits_reset_for_tests
        from inference.services import job_cancel, job_create

        for i in range(jobs):
            r = reservation_create(tenant=tenant, tokens=10 + i, now=self.month)
            reservation_settle(
                reservation_id=r.pk, gpu_seconds=1.5, node_name=self.node.name, gpu_model="A10", now=self.month
            )
            job = job_create(tenant=tenant, text=f"第{self.n}{i}句", voice="zh-female", seed=i + 1)
            if i % 2:
                job_cancel(job=job)
            limits_reset_for_tests()  # the plan's concurrent-job slots: these jobs never run
        if tenant.plan.allow_topups:
            topup_purchase(tenant=tenant, pack_code="topup-10k")
        past = invoice_draft_build(tenant=tenant, period_start=self.month.date())
        if past.status == "draft":
            invoice_finalize(invoice_id=past.pk)
        invoice_draft_build(tenant=tenant, period_start=timezone.now().date())

    def grow(self, *, tenants: int, jobs: int):
        from billing.services import limits_reset_for_tests

        self._usage(self.main, jobs)
        for i in range(tenants):
            plan = ("free", "pro", "enterprise")[i % 3]
            self._usage(self._tenant(plan, zone=("UTC", "Asia/Shanghai", "America/New_York")[i % 3]), jobs)
        limits_reset_for_tests()


def _count(client, url) -> int:
    client.get(url)  # warm: an API key's last_used_at refresh (once a minute) is not the page's
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code, response.content[:300])
    return len(ctx.captured_queries)


def _measure(world, staff):
    owner = Client()
    owner.force_login(world.main.test_owner)
    api = Client(HTTP_AUTHORIZATION=f"Bearer {world.main.test_api_key}")
    admin = Client()
    admin.force_login(staff)
    counts = {}
    for url in PORTAL_PAGES:
        counts[url] = _count(owner, url)
    for url in API_PAGES:
        counts[url] = _count(api, url)
    cache.clear()
    for url in STAFF_PAGES:  # fresh first, then the cached page
        counts[url] = _count(admin, url)
    for url in ADMIN_PAGES:
        counts[url] = _count(admin, url)
    return counts


@pytest.mark.django_db
def test_query_counts_do_not_grow_with_tenants_or_jobs(staff_user):
    world = World()
    small = _measure(world, staff_user)
    world.grow(tenants=9, jobs=6)
    large = _measure(world, staff_user)
    pinned = {**PORTAL_PAGES, **API_PAGES, **STAFF_PAGES, **ADMIN_PAGES}
    grew = {url: (small[url], large[url]) for url in pinned if large[url] != small[url]}
    assert not grew, f"query counts grew with the data (small, large): {grew}"
    over = {url: (large[url], pinned[url]) for url in pinned if large[url] > pinned[url]}
    assert not over, f"over the pinned ceiling (queries, pinned): {over}"
