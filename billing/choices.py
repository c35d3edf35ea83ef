"""Billing's public constants: enumerations (plan periods, roles, reservation, ledger, payment,
plan-change and invoice states) and the session key of the selected tenant."""

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


# The session key under which a logged-in user's selected tenant id is remembered. The portal
# writes it (switching organisation, accepting an invitation); the portal and the API's
# session authentication read it through billing.selectors.tenant_for_user, which checks
# the user still has a seat in that tenant.
SESSION_TENANT_KEY = "tenant_id"
