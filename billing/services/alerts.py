"""Usage alerts: thresholds per tenant, fired exactly once per threshold per period, sent by
e-mail and as a signed webhook with retries and a replayable delivery log.

Anchors: Lago's and Stripe's usage alerts, LiteLLM's soft budgets. A tenant has by default
alerts at 80 % and 100 % of its period's allowance (the allowance window: a day on Free, the
billing month otherwise) and when its top-up balance falls below 10,000 tokens
(``billing.choices``); ``alert_policy_update`` changes them.

Exactly once: the reservation that moves usage across a threshold is the one that fires it
(reservations move the balance under the account lock, so their before/after intervals never
overlap), and the ``UsageAlert`` row's unique key (tenant, kind, threshold, period) makes any
second firing - a released reservation crossing back and forth, a retry, a race - a no-op.
Firing costs the reserve hot path nothing unless a threshold is crossed.

Webhooks: the body is JSON, signed ``X-Voxfleet-Signature: sha256=<hex HMAC-SHA256 of the
body under the endpoint's secret>``; the body carries its own event id and time, so a
receiver can refuse replays. Each delivery is tried by a Celery task (in-process thread on
the embedded default) after commit, and retried with exponential backoff on a network error
or a non-2xx answer, up to ``DELIVERY_MAX_ATTEMPTS``; the portal lists them and replays one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import threading
import urllib.error
import urllib.request
import uuid
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import URLValidator
from django.db import IntegrityError, close_old_connections, transaction
from django.utils import timezone

from billing.choices import ALERT_DEFAULT_PERCENTS, ALERT_DEFAULT_TOPUP_BELOW, AlertKind, DeliveryStatus
from billing.models import AlertPolicy, UsageAlert, WebhookDelivery, WebhookEndpoint
from console.errors import NotFound, VoxfleetError

if TYPE_CHECKING:
    from billing.models import Tenant

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Voxfleet-Signature"
DELIVERY_MAX_ATTEMPTS = 8
DELIVERY_TIMEOUT_S = 10
# Backoff: 30 s, 1 min, 2 min, 4 min ... capped at 6 h.
DELIVERY_BACKOFF_BASE_S = 30
DELIVERY_BACKOFF_MAX_S = 6 * 3600
ENDPOINTS_PER_TENANT_MAX = 5


def webhook_signature(*, secret: str, body: bytes) -> str:
    """The signature header's value for ``body``: ``sha256=<hex>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _policy(tenant_id: int) -> tuple[list[int], int | None, bool]:
    policy = AlertPolicy.objects.filter(tenant_id=tenant_id).first()
    if policy is None:
        return list(ALERT_DEFAULT_PERCENTS), ALERT_DEFAULT_TOPUP_BELOW, True
    return list(policy.allowance_percents or []), policy.topup_below_tokens, policy.email_enabled


def alert_policy_update(
    *, tenant: Tenant, allowance_percents: list[int], topup_below_tokens: int | None, email_enabled: bool = True
) -> AlertPolicy:
    """Set the tenant's thresholds (validated by AlertPolicy.clean: up to 5 percents, 1-100)."""
    policy = AlertPolicy.objects.filter(tenant_id=tenant.pk).first() or AlertPolicy(tenant=tenant)
    policy.allowance_percents = sorted(allowance_percents)
    policy.topup_below_tokens = topup_below_tokens
    policy.email_enabled = email_enabled
    try:
        policy.full_clean(exclude=["tenant"])
    except ValidationError as exc:
        raise VoxfleetError("; ".join(exc.messages), code="invalid_alert_policy") from None
    policy.save()
    return policy


# --- firing -----------------------------------------------------------------------------


def crossed_percents(*, percents, allowance_tokens: int, remaining_before: int, remaining_after: int) -> list[int]:
    """The thresholds a reservation carried usage across: used_before < p % <= used_after."""
    if allowance_tokens <= 0:
        return []
    used_before = allowance_tokens - remaining_before
    used_after = allowance_tokens - remaining_after
    out = []
    for p in percents or ():
        mark = allowance_tokens * int(p)  # compare used/allowance >= p/100 without rounding
        if used_before * 100 < mark <= used_after * 100:
            out.append(int(p))
    return out


def usage_alerts_after_reserve(
    *,
    tenant_id: int,
    period_start: dt.datetime | None,
    allowance_tokens: int,
    remaining_before: int,
    remaining_after: int,
    percents=None,
    topup_before: int | None = None,
    topup_after: int | None = None,
    now: dt.datetime | None = None,
) -> list[UsageAlert]:
    """Fire what a reservation crossed. ``percents`` None: read the tenant's policy (the slow
    path); the fast path passes what its statement returned ([] or the policy's list)."""
    if period_start is None:
        return []
    email = True
    topup_below = None
    if percents is None or topup_before is not None:
        policy_percents, topup_below, email = _policy(tenant_id)
        percents = policy_percents if percents is None else percents
    fired = []
    for p in crossed_percents(
        percents=percents,
        allowance_tokens=allowance_tokens,
        remaining_before=remaining_before,
        remaining_after=remaining_after,
    ):
        alert = usage_alert_fire(
            tenant_id=tenant_id,
            kind=AlertKind.ALLOWANCE_PERCENT,
            threshold=p,
            period_start=period_start,
            allowance_tokens=allowance_tokens,
            value=allowance_tokens - remaining_after,
            now=now,
        )
        if alert is not None:
            fired.append(alert)
    if topup_below is not None and topup_before is not None and topup_after is not None:
        if topup_before >= topup_below > topup_after:
            alert = usage_alert_fire(
                tenant_id=tenant_id,
                kind=AlertKind.TOPUP_BELOW,
                threshold=topup_below,
                period_start=period_start,
                allowance_tokens=allowance_tokens,
                value=topup_after,
                now=now,
            )
            if alert is not None:
                fired.append(alert)
    return fired


def _alert_body(alert: UsageAlert) -> dict:
    if alert.kind == AlertKind.ALLOWANCE_PERCENT:
        summary = (
            f"{alert.threshold} % of the period's allowance is used "
            f"({alert.value:,} of {alert.allowance_tokens:,} tokens)."
        )
    else:
        summary = f"Top-up balance is below {alert.threshold:,} tokens ({alert.value:,} left)."
    return {
        "type": f"usage_alert.{alert.kind}",
        "tenant": alert.tenant.slug,
        "threshold": alert.threshold,
        "value": alert.value,
        "allowance_tokens": alert.allowance_tokens,
        "period_start": alert.period_start.isoformat(),
        "summary": summary,
    }


def _body_bytes(alert: UsageAlert) -> str:
    event = {"id": f"evt_{uuid.uuid4().hex}", "created_at": timezone.now().isoformat(), **_alert_body(alert)}
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def usage_alert_fire(
    *,
    tenant_id: int,
    kind: str,
    threshold: int,
    period_start: dt.datetime,
    allowance_tokens: int,
    value: int,
    now: dt.datetime | None = None,
) -> UsageAlert | None:
    """Record the alert once (None if it already fired this period) and, after commit, send
    its e-mail and one webhook delivery per active endpoint."""
    now = now or timezone.now()
    try:
        with transaction.atomic():  # a savepoint: the duplicate's IntegrityError leaves the caller's transaction usable
            alert = UsageAlert.objects.create(
                tenant_id=tenant_id,
                kind=kind,
                threshold=threshold,
                period_start=period_start,
                allowance_tokens=allowance_tokens,
                value=value,
                fired_at=now,
            )
    except IntegrityError:
        return None
    alert = UsageAlert.objects.select_related("tenant").get(pk=alert.pk)
    deliveries = [
        WebhookDelivery.objects.create(alert=alert, endpoint=endpoint, body=_body_bytes(alert), next_attempt_at=now)
        for endpoint in WebhookEndpoint.objects.filter(tenant_id=tenant_id, is_active=True)
    ]
    _, _, email = _policy(tenant_id)
    ids = [d.pk for d in deliveries]
    transaction.on_commit(lambda: _after_commit(alert_id=alert.pk, delivery_ids=ids, email=email))
    return alert


def _after_commit(*, alert_id: int, delivery_ids: list[int], email: bool) -> None:
    if email:
        _enqueue("billing.usage_alert_email", alert_id)
    for delivery_id in delivery_ids:
        _enqueue("billing.webhook_deliver", delivery_id)


def _enqueue(task_name: str, object_id: int, *, countdown: float = 0) -> None:
    """Celery with a broker; on the embedded default a daemon thread in this process."""
    if settings.EMBEDDED:
        timer = threading.Timer(countdown, _run_inline, args=(task_name, object_id))
        timer.daemon = True
        timer.start()
        return
    from celery import current_app

    try:
        current_app.send_task(task_name, args=[object_id], countdown=countdown or None)
    except Exception as exc:  # noqa: BLE001 - broker down: the delivery stays pending for the sweep
        log.warning("could not enqueue %s(%s): %s", task_name, object_id, exc)


def _run_inline(task_name: str, object_id: int) -> None:
    close_old_connections()
    try:
        if task_name == "billing.usage_alert_email":
            usage_alert_email_send(alert_id=object_id)
        else:
            delay = webhook_delivery_attempt(delivery_id=object_id)
            if delay is not None:
                _enqueue(task_name, object_id, countdown=delay)
    except Exception:  # noqa: BLE001 - a background send must not kill the process; logged
        log.exception("%s(%s) failed", task_name, object_id)
    finally:
        close_old_connections()


def usage_alert_email_send(*, alert_id: int) -> bool:
    """E-mail the alert to the tenant's billing address (nothing without one)."""
    alert = UsageAlert.objects.select_related("tenant").filter(pk=alert_id).first()
    if alert is None or not alert.tenant.billing_email:
        return False
    body = _alert_body(alert)
    send_mail(
        subject=f"Voxfleet usage alert for {alert.tenant.name}: {body['summary']}",
        message=f"{body['summary']}\n\nPeriod starting {alert.period_start:%Y-%m-%d %H:%M %Z}.\n",
        from_email=None,
        recipient_list=[alert.tenant.billing_email],
    )
    return True


# --- webhook deliveries -----------------------------------------------------------------


def _backoff_s(attempts: int) -> int:
    return min(DELIVERY_BACKOFF_MAX_S, DELIVERY_BACKOFF_BASE_S * 2 ** max(0, attempts - 1))


def _post(url: str, body: bytes, headers: dict) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=DELIVERY_TIMEOUT_S) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def webhook_delivery_attempt(*, delivery_id: int, now: dt.datetime | None = None) -> int | None:
    """Try one delivery once. Returns the seconds until the next try, or None when it is done
    (delivered, given up, or not due/claimed by another worker)."""
    now = now or timezone.now()
    # Claim it (healthchecks' conditional UPDATE): only one worker sends a given attempt.
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=now
    ).update(status=DeliveryStatus.SENDING)
    if claimed != 1:
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    body = delivery.body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Voxfleet-Webhooks/1",
        SIGNATURE_HEADER: webhook_signature(secret=delivery.endpoint.secret, body=body),
        "X-Voxfleet-Delivery": str(delivery.pk),
    }
    code, error = None, ""
    try:
        code = _post(delivery.endpoint.url, body, headers)
    except (OSError, ValueError) as exc:  # refused, timed out, DNS, bad URL
        error = f"{type(exc).__name__}: {exc}"[:255]
    attempts = delivery.attempts + 1
    fields = {"attempts": attempts, "last_status_code": code, "last_error": error}
    if code is not None and 200 <= code < 300:
        WebhookDelivery.objects.filter(pk=delivery_id).update(
            status=DeliveryStatus.SUCCEEDED, delivered_at=timezone.now(), **fields
        )
        return None
    if not error:
        fields["last_error"] = f"HTTP {code}"
    if attempts >= DELIVERY_MAX_ATTEMPTS:
        WebhookDelivery.objects.filter(pk=delivery_id).update(status=DeliveryStatus.FAILED, **fields)
        return None
    delay = _backoff_s(attempts)
    WebhookDelivery.objects.filter(pk=delivery_id).update(
        status=DeliveryStatus.PENDING, next_attempt_at=now + dt.timedelta(seconds=delay), **fields
    )
    return delay


def webhook_deliveries_retry_due(*, now: dt.datetime | None = None) -> int:
    """Re-enqueue deliveries whose retry is due but whose task was lost (beat's sweep)."""
    now = now or timezone.now()
    due = list(
        WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now).values_list(
            "pk", flat=True
        )[:500]
    )
    for delivery_id in due:
        _enqueue("billing.webhook_deliver", delivery_id)
    return len(due)


def webhook_delivery_replay(*, tenant: Tenant, delivery_id: int) -> WebhookDelivery:
    """Send a delivery's alert again to its endpoint, as a new delivery (the log keeps both)."""
    original = (
        WebhookDelivery.objects.select_related("alert__tenant", "endpoint")
        .filter(pk=delivery_id, alert__tenant_id=tenant.pk)
        .first()
    )
    if original is None:
        raise NotFound("There is no such delivery.", code="delivery_not_found")
    if not original.endpoint.is_active:
        raise VoxfleetError("That endpoint is switched off; switch it on to replay.", code="endpoint_inactive")
    replay = WebhookDelivery.objects.create(
        alert=original.alert, endpoint=original.endpoint, body=_body_bytes(original.alert), replay_of=original
    )
    transaction.on_commit(lambda: _enqueue("billing.webhook_deliver", replay.pk))
    return replay


def webhook_endpoint_create(*, tenant: Tenant, url: str) -> WebhookEndpoint:
    """A new endpoint with a fresh secret (shown to the owner on the alerts page)."""
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        raise VoxfleetError("Give an http(s) URL for the webhook.", code="invalid_url", param="url") from None
    if WebhookEndpoint.objects.filter(tenant_id=tenant.pk).count() >= ENDPOINTS_PER_TENANT_MAX:
        raise VoxfleetError(f"At most {ENDPOINTS_PER_TENANT_MAX} webhook endpoints.", code="too_many_endpoints")
    return WebhookEndpoint.objects.create(tenant=tenant, url=url, secret=f"whsec_{secrets.token_urlsafe(32)}")


def webhook_endpoint_delete(*, tenant: Tenant, endpoint_id: int) -> None:
    deleted, _ = WebhookEndpoint.objects.filter(pk=endpoint_id, tenant_id=tenant.pk).delete()
    if not deleted:
        raise NotFound("There is no such endpoint.", code="endpoint_not_found")
