"""Billing writes (keyword-only, ``<entity>_<action>``), one module per sub-domain.

    tenancy   tenants, users, memberships, invitations
    api_keys  API keys: create, authenticate, revoke
    quota     allowance windows, reserve -> settle / release, ledger adjustments
    topups    top-up purchases, grants and expiry
    plans     plan look-up, the feature gate, plan changes
    invoices  invoices, custom fees, period close
    limits    per-plan rate and concurrency limits
    alerts    usage alerts: thresholds, firing once per period, e-mail and signed webhooks

Everything public is re-exported here, so callers write ``from billing.services import X``
whichever module ``X`` lives in. ``_accounts`` holds private helpers the modules share
(the account lock, allowance windows, ledger rows). Lock order, everywhere: BillingAccount
(the tenant's lock row) -> TopUp rows (by expiry, id) -> TokenReservation.
"""

from __future__ import annotations

from billing.errors import UnknownPlan  # raised by plan_get; callers catch it from here
from billing.services import limits
from billing.services.alerts import (
    SIGNATURE_HEADER,
    alert_policy_update,
    usage_alert_email_send,
    usage_alert_fire,
    usage_alerts_after_reserve,
    webhook_deliveries_retry_due,
    webhook_delivery_attempt,
    webhook_delivery_replay,
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_signature,
)
from billing.services.api_keys import (
    API_KEY_LAST_USED_RESOLUTION,
    api_key_authenticate,
    api_key_create,
    api_key_revoke,
    api_key_revoke_for_tenant,
)
from billing.services.invoices import (
    billing_period_close,
    custom_fee_add,
    invoice_draft_build,
    invoice_draft_refresh,
    invoice_finalize,
    invoice_mark_paid,
    invoice_void,
)
from billing.services.limits import (
    job_slot_acquire,
    job_slot_release,
    job_slots_in_use,
    limits_reset_for_tests,
    request_admit,
)
from billing.services.plans import PLAN_FEATURES, plan_change, plan_feature_check, plan_get
from billing.services.quota import (
    account_window_ensure,
    ledger_adjust,
    reservation_create,
    reservation_release,
    reservation_settle,
)
from billing.services.tenancy import (
    INVITATION_VALID_FOR,
    invitation_accept,
    invitation_check,
    invitation_create,
    invitation_revoke,
    membership_add,
    membership_remove,
    tenant_create,
    user_create,
)
from billing.services.topups import topup_grant, topup_purchase, topups_expire_due, topups_expire_lapsed

__all__ = [
    "API_KEY_LAST_USED_RESOLUTION",
    "SIGNATURE_HEADER",
    "alert_policy_update",
    "INVITATION_VALID_FOR",
    "PLAN_FEATURES",
    "UnknownPlan",
    "account_window_ensure",
    "api_key_authenticate",
    "api_key_create",
    "api_key_revoke",
    "api_key_revoke_for_tenant",
    "billing_period_close",
    "custom_fee_add",
    "invoice_draft_build",
    "invoice_draft_refresh",
    "invoice_finalize",
    "invoice_mark_paid",
    "invoice_void",
    "invitation_accept",
    "invitation_check",
    "invitation_create",
    "invitation_revoke",
    "job_slot_acquire",
    "job_slot_release",
    "job_slots_in_use",
    "ledger_adjust",
    "limits",
    "limits_reset_for_tests",
    "membership_add",
    "membership_remove",
    "plan_change",
    "plan_feature_check",
    "plan_get",
    "request_admit",
    "reservation_create",
    "reservation_release",
    "reservation_settle",
    "tenant_create",
    "topup_grant",
    "topup_purchase",
    "topups_expire_due",
    "topups_expire_lapsed",
    "usage_alert_email_send",
    "usage_alert_fire",
    "usage_alerts_after_reserve",
    "user_create",
    "webhook_deliveries_retry_due",
    "webhook_delivery_attempt",
    "webhook_delivery_replay",
    "webhook_endpoint_create",
    "webhook_endpoint_delete",
    "webhook_signature",
]
