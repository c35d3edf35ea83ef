"""Billing reads (keyword-only, no writes), one module per sub-domain.

    alerts     usage-alert thresholds, webhook endpoints, alerts and deliveries
    tenancy    which tenant a user acts for, seats, tenants
    api_keys   a tenant's keys
    quota      what a tenant may still spend
    plans      the plan catalogue and pending changes
    topups     top-up packs and purchases
    invoices   invoices and the line items a month owes
    usage      usage per day in the tenant's time zone; tokens charged by plan
    economics  GPU cost, revenue and margin per tenant, node and month

Everything public is re-exported here: ``from billing.selectors import X``.
"""

from __future__ import annotations

from billing.selectors.alerts import (
    AlertSettings,
    alert_settings_get,
    usage_alert_list_for_tenant,
    webhook_delivery_list_for_tenant,
    webhook_endpoint_list_for_tenant,
)
from billing.selectors.api_keys import api_key_list_for_tenant
from billing.selectors.economics import (
    DEFAULT_GPU_MODEL,
    Economics,
    EconomicsOverview,
    economics_by_node,
    economics_by_period,
    economics_by_tenant,
    economics_overview,
    gpu_cost,
    gpu_cost_rates,
    tenant_revenue,
)
from billing.selectors.invoices import invoice_get_for_user, invoice_lines_compute, invoice_list_for_tenant
from billing.selectors.plans import plan_change_pending, plan_list, plan_list_offered
from billing.selectors.quota import QuotaStatus, quota_get
from billing.selectors.tenancy import (
    invitation_list_open_for_tenant,
    membership_exists_for_email,
    membership_for_user,
    membership_list_for_tenant,
    membership_list_for_user,
    membership_role_get,
    tenant_count_by_plan,
    tenant_for_user,
    tenant_get_active,
    tenant_get_by_name,
    tenant_list,
)
from billing.selectors.topups import topup_list_for_tenant, topup_pack_list_active
from billing.selectors.usage import USAGE_DAYS_MAX, tokens_charged_by_plan, usage_by_day, usage_since

__all__ = [
    "AlertSettings",
    "alert_settings_get",
    "usage_alert_list_for_tenant",
    "webhook_delivery_list_for_tenant",
    "webhook_endpoint_list_for_tenant",
    "DEFAULT_GPU_MODEL",
    "USAGE_DAYS_MAX",
    "Economics",
    "EconomicsOverview",
    "QuotaStatus",
    "api_key_list_for_tenant",
    "economics_by_node",
    "economics_by_period",
    "economics_by_tenant",
    "economics_overview",
    "gpu_cost",
    "gpu_cost_rates",
    "invitation_list_open_for_tenant",
    "invoice_get_for_user",
    "invoice_lines_compute",
    "invoice_list_for_tenant",
    "membership_exists_for_email",
    "membership_for_user",
    "membership_list_for_tenant",
    "membership_list_for_user",
    "membership_role_get",
    "plan_change_pending",
    "plan_list",
    "plan_list_offered",
    "quota_get",
    "tenant_revenue",
    "tenant_count_by_plan",
    "tenant_for_user",
    "tenant_get_active",
    "tenant_get_by_name",
    "tenant_list",
    "topup_list_for_tenant",
    "tokens_charged_by_plan",
    "topup_pack_list_active",
    "usage_by_day",
    "usage_since",
]
