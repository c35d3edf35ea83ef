"""Usage-alert reads: a tenant's thresholds, webhook endpoints, fired alerts and deliveries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from billing.choices import ALERT_DEFAULT_PERCENTS, ALERT_DEFAULT_TOPUP_BELOW
from billing.models import AlertPolicy, UsageAlert, WebhookDelivery, WebhookEndpoint

if TYPE_CHECKING:
    from billing.models import Tenant


@dataclass(frozen=True)
class AlertSettings:
    """The thresholds in force (the defaults when the tenant set none)."""

    allowance_percents: list[int]
    topup_below_tokens: int | None
    email_enabled: bool
    is_default: bool


def alert_settings_get(*, tenant: Tenant) -> AlertSettings:
    policy = AlertPolicy.objects.filter(tenant_id=tenant.pk).first()
    if policy is None:
        return AlertSettings(list(ALERT_DEFAULT_PERCENTS), ALERT_DEFAULT_TOPUP_BELOW, True, True)
    return AlertSettings(list(policy.allowance_percents), policy.topup_below_tokens, policy.email_enabled, False)


def webhook_endpoint_list_for_tenant(*, tenant: Tenant) -> list[WebhookEndpoint]:
    return list(WebhookEndpoint.objects.filter(tenant_id=tenant.pk).order_by("created_at", "id"))


def usage_alert_list_for_tenant(*, tenant: Tenant, limit: int = 20) -> list[UsageAlert]:
    return list(UsageAlert.objects.filter(tenant_id=tenant.pk).order_by("-fired_at", "-id")[:limit])


def webhook_delivery_list_for_tenant(*, tenant: Tenant, limit: int = 50) -> list[WebhookDelivery]:
    """The delivery log, newest first, with each delivery's alert and endpoint (one query)."""
    return list(
        WebhookDelivery.objects.filter(alert__tenant_id=tenant.pk)
        .select_related("alert", "endpoint")
        .order_by("-created_at", "-id")[:limit]
    )
