"""Dashboard and playground pages: quota, usage charts, recent jobs with audio; plan gates."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from billing.selectors import quota_get


def _figure(body: str, fig_id: str) -> dict:
    m = re.search(rf'<script id="{fig_id}" type="application/json">(.*?)</script>', body, re.S)
    return json.loads(m.group(1))


@pytest.mark.django_db
def test_dashboard_shows_quota_usage_and_recent_job_audio(make_tenant, run_job, client):
    tenant = make_tenant("free")
    job = run_job(tenant, text="你好，世界")
    assert job.status == "succeeded", job.error
    client.force_login(tenant.test_owner)
    body = client.get("/").content.decode()
    remaining = quota_get(tenant=tenant).remaining
    assert remaining == 500 - 4
    assert f'data-remaining="{remaining}"' in body
    assert f"/jobs/{job.pk}/audio" in body
    per_day = _figure(body, "fig_per_day")
    assert per_day["data"][0]["y"][-1] == 4
    assert _figure(body, "fig_language")["data"][0]["labels"] == ["Mandarin"]
    # The same numbers as a table for screen readers.
    assert '<th scope="row">Mandarin</th><td class="num">4</td>' in body
    assert _figure(body, "fig_feature")["data"][0]["x"] == ["No instruction"]
    audio = client.get(f"/jobs/{job.pk}/audio")
    assert audio.status_code == 200 and audio["Content-Type"] == "audio/wav"
    assert b"".join(audio.streaming_content)[:4] == b"RIFF"


@pytest.mark.django_db
def test_outsider_cannot_fetch_job_audio(make_tenant, run_job, outsider_client):
    tenant = make_tenant("pro")
    job = run_job(tenant)
    assert outsider_client.get(f"/jobs/{job.pk}/audio").status_code == 404
    assert f"/jobs/{job.pk}/audio" not in outsider_client.get("/").content.decode()


@pytest.mark.django_db
def test_feature_chart_counts_dialect_jobs(make_tenant, run_job, client):
    tenant = make_tenant("pro")
    run_job(tenant, text="你好", instruction="用四川话说这句话")
    client.force_login(tenant.test_owner)
    body = client.get("/").content.decode()
    fig = _figure(body, "fig_feature")
    assert dict(zip(fig["data"][0]["x"], fig["data"][0]["y"], strict=True)) == {"Dialect": 2 + 8}


@pytest.mark.django_db
def test_dashboard_query_count_is_bounded(make_tenant, run_job, client, django_assert_max_num_queries):
    tenant = make_tenant("pro")
    for i in range(3):
        run_job(tenant, text=f"第{i}句", seed=i + 1)
    client.force_login(tenant.test_owner)
    with django_assert_max_num_queries(15):
        assert client.get("/").status_code == 200


@pytest.mark.django_db
def test_playground_disables_paid_instructions_on_free(owner_client):
    body = owner_client.get("/playground/").content.decode()
    assert re.search(r'<option value="用四川话说这句话"[^>]*disabled', body)
    assert "not in the Free plan" in body and "Upgrade to Pro" in body
    assert 'value="zh-female"' in body


@pytest.mark.django_db
def test_playground_enables_instructions_on_pro(make_tenant):
    tenant = make_tenant("pro")
    c = Client()
    c.force_login(tenant.test_owner)
    body = c.get("/playground/").content.decode()
    assert re.search(r'<option value="用四川话说这句话"[^>]*data-key="sichuan">', body)
    assert "upgrade" not in re.search(r'<select id="instruction-preset".*?</select>', body, re.S).group(0)
