"""The alerts page: usage-alert thresholds, webhook endpoints and the delivery log (with replay)."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from billing.selectors import (
    alert_settings_get,
    usage_alert_list_for_tenant,
    webhook_delivery_list_for_tenant,
    webhook_endpoint_list_for_tenant,
)
from billing.services import (
    SIGNATURE_HEADER,
    alert_policy_update,
    webhook_delivery_replay,
    webhook_endpoint_create,
    webhook_endpoint_delete,
)
from console.errors import VoxfleetError
from console.portal import forms
from console.portal.views._access import owner_required, tenant_required


@tenant_required
def alerts(request):
    current = alert_settings_get(tenant=request.tenant)
    policy_form = forms.AlertPolicyForm(
        request.POST if request.method == "POST" and "allowance_percents" in request.POST else None,
        initial={
            "allowance_percents": ", ".join(str(p) for p in current.allowance_percents),
            "topup_below_tokens": current.topup_below_tokens,
            "email_enabled": current.email_enabled,
        },
    )
    endpoint_form = forms.WebhookEndpointForm(
        request.POST if request.method == "POST" and "url" in request.POST else None
    )
    if request.method == "POST":
        if not request.is_owner:
            messages.error(request, "Only the organisation's owner can change alerts.")
            return redirect("portal:alerts")
        try:
            if policy_form.is_bound and policy_form.is_valid():
                d = policy_form.cleaned_data
                alert_policy_update(
                    tenant=request.tenant,
                    allowance_percents=d["allowance_percents"],
                    topup_below_tokens=d["topup_below_tokens"],
                    email_enabled=d["email_enabled"],
                )
                messages.success(request, "Alert thresholds saved.")
                return redirect("portal:alerts")
            if endpoint_form.is_bound and endpoint_form.is_valid():
                endpoint = webhook_endpoint_create(tenant=request.tenant, url=endpoint_form.cleaned_data["url"])
                messages.success(request, f"Webhook added: {endpoint.url}. Its signing secret is shown below.")
                return redirect("portal:alerts")
        except VoxfleetError as exc:
            (policy_form if policy_form.is_bound else endpoint_form).add_error(None, exc.message)
    return render(
        request,
        "portal/alerts.html",
        {
            "current": current,
            "policy_form": policy_form,
            "endpoint_form": endpoint_form,
            "endpoints": webhook_endpoint_list_for_tenant(tenant=request.tenant) if request.is_owner else [],
            "fired": usage_alert_list_for_tenant(tenant=request.tenant),
            "deliveries": webhook_delivery_list_for_tenant(tenant=request.tenant),
            "signature_header": SIGNATURE_HEADER,
        },
    )


@require_POST
@owner_required
def webhook_endpoint_delete_view(request, endpoint_id: int):
    try:
        webhook_endpoint_delete(tenant=request.tenant, endpoint_id=endpoint_id)
    except VoxfleetError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Webhook removed; its deliveries are gone from the log.")
    return redirect("portal:alerts")


@require_POST
@owner_required
def webhook_delivery_replay_view(request, delivery_id: int):
    try:
        replay = webhook_delivery_replay(tenant=request.tenant, delivery_id=delivery_id)
    except VoxfleetError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Delivery {delivery_id} is being sent again (as delivery {replay.pk}).")
    return redirect("portal:alerts")
