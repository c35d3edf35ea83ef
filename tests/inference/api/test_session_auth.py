"""The portal reaches /api/v1 with its session: the tenant comes from the user's membership."""

from __future__ import annotations

from django.test import Client

from billing.services import user_create


def test_session_user_sees_its_tenants_quota_and_voices(make_tenant):
    pro = make_tenant("pro")
    browser = Client()
    browser.force_login(pro.test_owner)
    quota = browser.get("/api/v1/quota")
    assert quota.status_code == 200 and quota.json()["plan_code"] == "pro"
    voices = browser.get("/api/v1/voices").json()
    assert "zh-female" in [v["id"] for v in voices]


def test_session_writes_need_csrf(make_tenant):
    pro = make_tenant("pro")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(pro.test_owner)
    response = browser.post("/api/v1/jobs", {"input": "你好", "voice": "zh-female"}, content_type="application/json")
    assert response.status_code == 403


def test_user_without_tenant_is_refused(db):
    loner = user_create(username="loner", password="pw-secret-123")
    browser = Client()
    browser.force_login(loner)
    response = browser.get("/api/v1/voices")
    assert response.status_code == 403 and response.json()["error"]["code"] == "no_tenant"


def test_api_key_of_another_tenant_cannot_see_session_tenants_jobs(make_tenant):
    owner = make_tenant("pro")
    outsider = make_tenant("pro")
    browser = Client()
    response = browser.get("/api/v1/jobs/1", HTTP_AUTHORIZATION=f"Bearer {outsider.test_api_key}")
    assert response.status_code == 404
    assert browser.get("/api/v1/jobs", HTTP_AUTHORIZATION=f"Bearer {owner.test_api_key}").json()["count"] == 0
