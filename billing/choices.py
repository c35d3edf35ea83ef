"""Billing's public constants: enumerations (plan periods, roles, reservation, ledger, payment,
plan-change and invoice states, alerts, API key scopes), alert defaults and the session key
of the selected tenant."""

from __future__ import annotations

from django.db import models


class AllowancePeriod(models.TextChoices):
    DAY = "day", "per day (tenant's time zone)"
    MONTH = "month", "per billing month"
    CONTRACT = "contract", "per contract"


class MembershipRole(models.TextChoices):
    OWNER = "owner", "Owner"
    MEMBER = "member", "Member"


class ReservationStatus(models.TextChoices):
    OPEN = "open", "open"
    SETTLED = "settled", "settled"
    RELEASED = "released", "released"


class LedgerKind(models.TextChoices):
    GRANT = "grant", "allowance grant"
    RESERVE = "reserve", "reservation"
    SETTLE = "settle", "settlement"
    RELEASE = "release", "release"
    TOPUP = "topup", "top-up"
    EXPIRY = "expiry", "expiry"
    ADJUSTMENT = "adjustment", "adjustment"


class LedgerBucket(models.TextChoices):
    ALLOWANCE = "allowance", "allowance"
    TOPUP = "topup", "top-up"
    OVERAGE = "overage", "overage"
    HELD = "held", "held only"


class PaymentStatus(models.TextChoices):
    PENDING = "pending", "pending"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"


class PlanChangeKind(models.TextChoices):
    UPGRADE = "upgrade", "upgrade (immediate, prorated)"
    DOWNGRADE = "downgrade", "downgrade (at period end)"


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft", "draft"
    FINALIZED = "finalized", "finalized"
    PAID = "paid", "paid"
    VOID = "void", "void"


class InvoiceLineKind(models.TextChoices):
    SUBSCRIPTION = "subscription", "subscription"
    PRORATION = "proration", "plan change proration"
    TOPUP = "topup", "top-up pack"
    OVERAGE = "overage", "overage"
    GPU_RENTAL = "gpu_rental", "GPU rental"
    CUSTOM = "custom", "custom fee"


class AlertKind(models.TextChoices):
    ALLOWANCE_PERCENT = "allowance_percent", "share of the period's allowance used"
    TOPUP_BELOW = "topup_below", "top-up balance below a number of tokens"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "pending"
    SENDING = "sending", "sending"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed (gave up)"


class ApiKeyScope(models.TextChoices):
    SYNTHESIZE = "synthesize", "synthesize (jobs, speech, their audio)"
    USAGE_READ = "usage:read", "read usage and quota"
    VOICES_MANAGE = "voices:manage", "manage voices"


API_KEY_SCOPES_ALL = [ApiKeyScope.SYNTHESIZE.value, ApiKeyScope.USAGE_READ.value, ApiKeyScope.VOICES_MANAGE.value]
# Usage alerts a tenant gets without setting any (PRODUCT.md, Plans).
ALERT_DEFAULT_PERCENTS = [80, 100]
ALERT_DEFAULT_TOPUP_BELOW = 10_000


# The session key under which a logged-in user's selected tenant id is remembered. The portal
# writes it (switching organisation, accepting an invitation); the portal and the API's
# session authentication read it through billing.selectors.tenant_for_user, which checks
# the user still has a seat in that tenant.
SESSION_TENANT_KEY = "tenant_id"
