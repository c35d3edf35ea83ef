"""Usage alerts: default thresholds, exactly once per threshold and period, e-mail and a
signed webhook with retries and backoff, a replayable delivery log; API key caps and scopes."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from billing.errors import ApiKeyCapReached
from billing.models import ApiKey, UsageAlert, WebhookDelivery
from billing.services import (
    SIGNATURE_HEADER,
    alert_policy_update,
    api_key_create,
    reservation_create,
    reservation_release,
    topup_purchase,
    usage_alert_email_send,
    webhook_delivery_attempt,
    webhook_endpoint_create,
)
from billing.services import alerts as alerts_module
from console.errors import VoxfleetError


@pytest.fixture
def queued(monkeypatch):
    """Record what would be sent after commit (the tests run the sends themselves)."""
    calls = []
    monkeypatch.setattr(alerts_module, "_enqueue", lambda name, oid, countdown=0: calls.append((name, oid)))
    return calls


class Receiver:
    """A webhook receiver on 127.0.0.1: answers the given statuses in turn, records requests."""

    def __init__(self, statuses):
        self.statuses = list(statuses)
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append((dict(self.headers), body))
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(*statuses):
        r = Receiver(statuses)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def _alerts(tenant):
    return sorted((a.kind, a.threshold) for a in UsageAlert.objects.filter(tenant=tenant))


def test_default_thresholds_fire_once_each_and_email(make_tenant, queued, django_capture_on_commit_callbacks, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    tenant = make_tenant("pro")  # 100,000 tokens this month
    with django_capture_on_commit_callbacks(execute=True):
        reservation_create(tenant=tenant, tokens=79_999)
    assert _alerts(tenant) == []
    with django_capture_on_commit_callbacks(execute=True):
        reservation_create(tenant=tenant, tokens=1)  # exactly 80 %
    assert _alerts(tenant) == [("allowance_percent", 80)]
    with django_capture_on_commit_callbacks(execute=True):
        r = reservation_create(tenant=tenant, tokens=15_000)
    reservation_release(reservation_id=r.pk, reason="failed")  # back under 80 %...
    with django_capture_on_commit_callbacks(execute=True):
        reservation_create(tenant=tenant, tokens=15_000)  # ...and across it again: no second alert
        reservation_create(tenant=tenant, tokens=5_000)  # 100 %
    assert _alerts(tenant) == [("allowance_percent", 80), ("allowance_percent", 100)]
    emails = [oid for name, oid in queued if name == "billing.usage_alert_email"]
    assert len(emails) == 2
    assert usage_alert_email_send(alert_id=emails[0])
    assert "80 % of the period's allowance" in mail.outbox[0].subject
    assert mail.outbox[0].to == [tenant.billing_email]


def test_thresholds_are_the_tenants_and_validated(make_tenant, queued):
    tenant = make_tenant("pro")
    alert_policy_update(tenant=tenant, allowance_percents=[50], topup_below_tokens=None)
    reservation_create(tenant=tenant, tokens=80_000)
    assert _alerts(tenant) == [("allowance_percent", 50)]
    for bad in ([0], [101], [10, 10], [1, 2, 3, 4, 5, 6]):
        with pytest.raises(VoxfleetError):
            alert_policy_update(tenant=tenant, allowance_percents=bad, topup_below_tokens=None)


def test_topup_balance_below_threshold_fires_once(make_tenant, queued):
    tenant = make_tenant("pro")
    topup_purchase(tenant=tenant, pack_code="topup-10k")  # 10,000 top-up tokens
    reservation_create(tenant=tenant, tokens=100_000)  # allowance gone: 80 % and 100 %
    reservation_create(tenant=tenant, tokens=1)  # from the top-up: 9,999 < 10,000
    reservation_create(tenant=tenant, tokens=1)
    assert _alerts(tenant) == [("allowance_percent", 80), ("allowance_percent", 100), ("topup_below", 10_000)]


def test_webhook_is_signed_retried_with_backoff_and_replayable(
    make_tenant, queued, receiver, django_capture_on_commit_callbacks
):
    tenant = make_tenant("pro")
    hook = receiver(500, 200)
    endpoint = webhook_endpoint_create(tenant=tenant, url=hook.url)
    with django_capture_on_commit_callbacks(execute=True):
        reservation_create(tenant=tenant, tokens=80_000)
    delivery = WebhookDelivery.objects.get()
    assert ("billing.webhook_deliver", delivery.pk) in queued
    now = timezone.now()
    delay = webhook_delivery_attempt(delivery_id=delivery.pk, now=now)
    delivery.refresh_from_db()
    assert delay == 30 and (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
    assert webhook_delivery_attempt(delivery_id=delivery.pk, now=now) is None  # not due yet: not sent
    assert len(hook.requests) == 1
    assert webhook_delivery_attempt(delivery_id=delivery.pk, now=now + dt.timedelta(seconds=31)) is None
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
    headers, body = hook.requests[-1]
    expected = "sha256=" + hmac.new(endpoint.secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == expected
    event = json.loads(body)
    assert event["type"] == "usage_alert.allowance_percent" and event["threshold"] == 80 and event["id"]
    # The owner replays it from the portal; an outsider cannot.
    outsider = make_tenant("pro")
    c = Client()
    c.force_login(outsider.test_owner)
    c.post(f"/alerts/deliveries/{delivery.pk}/replay")
    assert WebhookDelivery.objects.count() == 1
    c.force_login(tenant.test_owner)
    page = c.get("/alerts/").content.decode()
    assert 'id="delivery-log"' in page and hook.url in page
    with django_capture_on_commit_callbacks(execute=True):
        c.post(f"/alerts/deliveries/{delivery.pk}/replay")
    replay = WebhookDelivery.objects.exclude(pk=delivery.pk).get()
    assert replay.replay_of_id == delivery.pk and ("billing.webhook_deliver", replay.pk) in queued
    assert webhook_delivery_attempt(delivery_id=replay.pk) is None
    replay.refresh_from_db()
    assert replay.status == "succeeded" and len(hook.requests) == 3


def test_delivery_gives_up_after_the_last_attempt(make_tenant, queued, receiver):
    tenant = make_tenant("pro")
    hook = receiver(*([503] * 20))
    webhook_endpoint_create(tenant=tenant, url=hook.url)
    reservation_create(tenant=tenant, tokens=80_000)
    delivery = WebhookDelivery.objects.get()
    at = timezone.now()
    delays = []
    for _ in range(alerts_module.DELIVERY_MAX_ATTEMPTS):
        delays.append(webhook_delivery_attempt(delivery_id=delivery.pk, now=at))
        at += dt.timedelta(hours=7)
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.attempts == alerts_module.DELIVERY_MAX_ATTEMPTS
    assert delays[:4] == [30, 60, 120, 240] and delays[-1] is None


def test_alerts_page_sets_thresholds_and_endpoints_for_owners_only(make_tenant, make_member):
    tenant = make_tenant("pro")
    mate = make_member(tenant, "alerts-mate")
    c = Client()
    c.force_login(mate)
    assert c.get("/alerts/").status_code == 200
    c.post("/alerts/", {"allowance_percents": "10", "topup_below_tokens": ""})
    c.force_login(tenant.test_owner)
    r = c.post("/alerts/", {"allowance_percents": "50, 90", "topup_below_tokens": "2000", "email_enabled": "on"})
    assert r.status_code == 302
    from billing.selectors import alert_settings_get

    assert alert_settings_get(tenant=tenant).allowance_percents == [50, 90]
    c.post("/alerts/", {"url": "https://hooks.example.com/voxfleet"})
    assert "whsec_" in c.get("/alerts/").content.decode()


# --- per-API-key monthly token caps and scopes ---------------------------------------------


def test_api_key_monthly_cap_refuses_past_it_and_releases_give_back(make_tenant):
    tenant = make_tenant("pro")
    key, _ = api_key_create(tenant=tenant, name="capped", monthly_token_cap=100)
    r = reservation_create(tenant=tenant, tokens=60, api_key=key)
    reservation_create(tenant=tenant, tokens=40, api_key=key)
    with pytest.raises(ApiKeyCapReached) as info:
        reservation_create(tenant=tenant, tokens=1, api_key=key)
    assert info.value.status == 429 and info.value.code == "api_key_cap_reached"
    reservation_create(tenant=tenant, tokens=500)  # the tenant's other traffic is not capped
    reservation_release(reservation_id=r.pk, reason="failed")
    reservation_create(tenant=tenant, tokens=60, api_key=key)  # the released 60 came back
    assert ApiKey.objects.get(pk=key.pk).cap_month_tokens == 100
    # Idempotent retries count once.
    uncapped_left = ApiKey.objects.get(pk=key.pk)
    uncapped_left.monthly_token_cap = 200
    uncapped_left.save()
    key.refresh_from_db()
    a = reservation_create(tenant=tenant, tokens=50, api_key=key, idempotency_key="same")
    b = reservation_create(tenant=tenant, tokens=50, api_key=key, idempotency_key="same")
    assert a.pk == b.pk and ApiKey.objects.get(pk=key.pk).cap_month_tokens == 150


def test_api_key_cap_and_scopes_over_http(make_tenant):
    tenant = make_tenant("pro")
    _, usage_only = api_key_create(tenant=tenant, name="reader", scopes=["usage:read"])
    _, synth_only = api_key_create(tenant=tenant, name="synth", scopes=["synthesize"], monthly_token_cap=3)
    reader = Client(HTTP_AUTHORIZATION=f"Bearer {usage_only}")
    synth = Client(HTTP_AUTHORIZATION=f"Bearer {synth_only}")
    job = {"input": "你好世界", "voice": "zh-female", "seed": 3}
    r = reader.post("/api/v1/jobs", job, content_type="application/json")
    assert r.status_code == 403 and r.json()["error"]["code"] == "api_key_scope_missing"
    assert reader.get("/api/v1/usage").status_code == 200
    assert synth.get("/api/v1/usage").status_code == 403
    r = synth.post("/api/v1/voices", {"name": "x"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "api_key_scope_missing"
    r = synth.post("/api/v1/jobs", job, content_type="application/json")  # 4 tokens > cap 3
    assert r.status_code == 429 and r.json()["error"]["code"] == "api_key_cap_reached"
    assert not tenant.synthesis_jobs.exists()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # the speech view reads from a worker thread
def test_openai_speech_needs_the_synthesize_scope(make_tenant):
    tenant = make_tenant("pro")
    _, usage_only = api_key_create(tenant=tenant, name="reader", scopes=["usage:read"])
    r = Client(HTTP_AUTHORIZATION=f"Bearer {usage_only}").post(
        "/v1/audio/speech",
        {"model": "cosyvoice-3", "input": "你好", "voice": "alloy"},
        content_type="application/json",
    )
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "api_key_scope_missing" and r.json()["error"]["type"]
