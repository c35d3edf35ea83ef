"""/api/v1/usage: days are the tenant's local days, and the numbers are what billing charged."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from billing.services import reservation_create, reservation_settle
from inference.selectors import usage_for_tenant


def test_usage_counts_a_day_in_the_tenants_time_zone(make_tenant):
    tenant = make_tenant("pro", time_zone="Asia/Shanghai")
    # 20:00 UTC on 10 May is 04:00 on 11 May in Shanghai: a UTC day would put it on the 10th.
    settled_at = dt.datetime(2026, 5, 10, 20, 0, tzinfo=dt.UTC)
    r = reservation_create(tenant=tenant, tokens=42, now=settled_at)
    reservation_settle(reservation_id=r.pk, gpu_seconds=1.5, now=settled_at)
    usage = usage_for_tenant(tenant=tenant, days=3, now=settled_at + dt.timedelta(hours=1))
    assert [(d["date"], d["tokens"], d["jobs"], d["gpu_seconds"]) for d in usage["days"]] == [
        ("2026-05-11", 42, 1, 1.5)
    ]
    assert usage["tokens_charged"] == 42
    assert usage["since"] == "2026-05-09T00:00:00+08:00"


@pytest.fixture
def finished_job(run_job):
    """Run one job on the local node now, as the executor would; it must have succeeded."""

    def run(tenant):
        job = run_job(tenant)
        assert job.status == "succeeded", job.error
        return job

    return run


def test_usage_endpoint_counts_jobs_on_local_days(make_tenant, finished_job):
    now = timezone.now()
    # A zone whose date differs from UTC's right now (UTC+14 late in the UTC day, UTC-12 early):
    # counted on UTC days, the job would land on the wrong date.
    tenant = make_tenant("pro", time_zone="Pacific/Kiritimati" if now.hour >= 10 else "Etc/GMT+12")
    job = finished_job(tenant)
    response = Client().get("/api/v1/usage", {"days": 2}, HTTP_AUTHORIZATION=f"Bearer {tenant.test_api_key}")
    assert response.status_code == 200
    body = response.json()
    local_day = job.finished_at.astimezone(tenant.tz).date().isoformat()
    assert local_day != job.finished_at.astimezone(dt.UTC).date().isoformat()
    assert [(d["date"], d["tokens"], d["jobs"]) for d in body["days"]] == [(local_day, job.tokens, 1)]
    assert body["days"][0]["audio_seconds"] == pytest.approx(job.audio_seconds, abs=0.001)
    assert body["tokens_charged"] == job.tokens and body["jobs_by_status"]["succeeded"] == 1
