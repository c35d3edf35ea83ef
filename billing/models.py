"""Billing models: plans, tenants, members, API keys, quotas, the ledger, top-ups and invoices."""

from __future__ import annotations

import zoneinfo
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from billing.choices import (  # noqa: F401 - re-exported for migrations and callers
    ALERT_DEFAULT_PERCENTS,
    ALERT_DEFAULT_TOPUP_BELOW,
    API_KEY_SCOPES_ALL,
    AlertKind,
    AllowancePeriod,
    ApiKeyScope,
    DeliveryStatus,
    InvoiceLineKind,
    InvoiceStatus,
    LedgerBucket,
    LedgerKind,
    MembershipRole,
    PaymentStatus,
    PlanChangeKind,
    ReservationStatus,
)
from billing.errors import InvoiceImmutable, LedgerImmutable


class Plan(models.Model):
    """A price list entry: allowance, feature gates and limits; admins edit plans as data."""

    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=64, unique=True)
    allowance_tokens = models.PositiveBigIntegerField(help_text="Tokens granted per allowance period.")
    allowance_period = models.CharField(max_length=16, choices=AllowancePeriod.choices)
    monthly_price = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0.00"))
    currency = models.CharField(max_length=3, default="USD")
    overage_price_per_1k = models.DecimalField(
        max_digits=12,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="Price per 1,000 tokens past the allowance and top-ups; empty means refuse instead.",
    )
    languages = models.JSONField(default=list, help_text='Language codes allowed, e.g. ["zh"]; empty means all.')
    allow_dialects = models.BooleanField(default=False)
    allow_emotions = models.BooleanField(default=False)
    allow_styles = models.BooleanField(default=False)
    allow_topups = models.BooleanField(default=False)
    dedicated_nodes = models.BooleanField(default=False)
    gpu_rental_price_per_hour = models.DecimalField(
        max_digits=12,
        decimal_places=4,
        default=Decimal("0.0000"),
        help_text="Price per GPU-hour of the tenant's dedicated nodes (enterprise rental).",
    )
    requests_per_minute = models.PositiveIntegerField(default=60)
    concurrent_jobs = models.PositiveIntegerField(default=2)
    is_public = models.BooleanField(default=True, help_text="Offered on the sign-up and plan pages.")
    sort_order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "name"]

    def __str__(self) -> str:
        return self.name

    def allows_language(self, language: str) -> bool:
        return not self.languages or language in self.languages

    def allows_feature(self, feature: str) -> bool:
        return {
            "dialect": self.allow_dialects,
            "emotion": self.allow_emotions,
            "style": self.allow_styles,
            "topup": self.allow_topups,
            "dedicated_nodes": self.dedicated_nodes,
        }[feature]


class Tenant(models.Model):
    """A customer organisation: owns voices, keys and jobs, and is billed on one plan."""

    name = models.CharField(max_length=128, unique=True)
    slug = models.SlugField(max_length=64, unique=True)
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="tenants")
    time_zone = models.CharField(max_length=64, default="UTC", help_text="Free plans reset at 00:00 here.")
    billing_email = models.EmailField(blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        try:
            zoneinfo.ZoneInfo(self.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValidationError({"time_zone": f"Unknown time zone {self.time_zone!r}."}) from None

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)


class Membership(models.Model):
    """A user's seat in a tenant, with a role."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=MembershipRole.choices, default=MembershipRole.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "user"], name="membership_unique_tenant_user")]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant} ({self.role})"


def _all_scopes() -> list[str]:
    return list(API_KEY_SCOPES_ALL)


def _default_percents() -> list[int]:
    return list(ALERT_DEFAULT_PERCENTS)


class Invitation(models.Model):
    """An owner's invitation to join a tenant: for one e-mail, used once, expiring, revocable.

    The link carries a random secret; only its SHA-256 is kept (like API keys), looked up by
    its public prefix.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField(help_text="Only an account with this address can accept (any case).")
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=~(models.Q(accepted_at__isnull=False) & models.Q(revoked_at__isnull=False)),
                name="invitation_accepted_or_revoked",
            )
        ]
        indexes = [models.Index(fields=["tenant", "accepted_at", "revoked_at"], name="invitation_tenant_open")]

    def __str__(self) -> str:
        return f"invitation of {self.email} to {self.tenant_id}"

    def is_open(self, now=None) -> bool:
        return self.accepted_at is None and self.revoked_at is None and (now or timezone.now()) < self.expires_at


class ApiKey(models.Model):
    """A tenant's API credential: the secret is shown once and only its SHA-256 is kept."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=64)
    prefix = models.CharField(max_length=16, unique=True, help_text="Public part shown in lists (vf_xxxxxxxx).")
    secret_hash = models.CharField(max_length=64)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    scopes = models.JSONField(
        default=_all_scopes, help_text="What the key may do: synthesize, usage:read, voices:manage."
    )
    monthly_token_cap = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Tokens this key may reserve per billing month; empty: no cap."
    )
    # The cap's counter: tokens reserved through the key in cap_month (released ones come back).
    cap_month = models.DateField(null=True, blank=True)
    cap_month_tokens = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.CheckConstraint(condition=models.Q(cap_month_tokens__gte=0), name="apikey_cap_nonneg")]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.tenant})"

    def clean(self) -> None:
        unknown = set(self.scopes or []) - set(API_KEY_SCOPES_ALL)
        if unknown or not self.scopes:
            raise ValidationError({"scopes": f"Scopes must be some of {', '.join(API_KEY_SCOPES_ALL)}."})

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


# --- Quotas, reservations and the ledger -------------------------------------------------
#
# Balances live as counters on ``BillingAccount`` (allowance of the open window) and
# ``TopUp`` (each pack's remaining tokens) so the hot path reads one locked row, but every
# change to them is also an append-only ``LedgerEntry``; ``billing_reconcile`` re-derives the
# counters from the rows. Lock order, everywhere: BillingAccount -> TopUp rows (by expiry,
# id) -> TokenReservation. Settling takes only the reservation lock (a suffix of that order).


class BillingAccount(models.Model):
    """A tenant's quota state: the open allowance window and its remaining tokens (the lock row)."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="billing_account")
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    allowance_tokens = models.PositiveBigIntegerField(default=0, help_text="Granted for the open window.")
    allowance_remaining = models.BigIntegerField(default=0)
    pending_plan = models.ForeignKey(
        Plan, on_delete=models.PROTECT, null=True, blank=True, related_name="+", help_text="Downgrade target."
    )
    pending_plan_at = models.DateTimeField(null=True, blank=True, help_text="When the downgrade takes effect.")
    gpu_rental_price_per_hour = models.DecimalField(
        max_digits=12,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="Contract rate per GPU-hour of dedicated nodes; empty uses the plan's rate.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(allowance_remaining__gte=0), name="account_allowance_nonneg")
        ]

    def __str__(self) -> str:
        return f"account of {self.tenant_id}"


class TokenReservation(models.Model):
    """Tokens held for one accepted job; settling consumes them and records GPU usage, releasing returns them."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="reservations")
    tokens = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=ReservationStatus.choices, default=ReservationStatus.OPEN)
    # NULL, not "": keys are unique per tenant and NULLs never collide.
    idempotency_key = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001
    reference = models.CharField(max_length=128, blank=True, help_text="Caller's reference, e.g. job:42.")
    # Where the tokens came from (allowance first, then top-ups by earliest expiry, then overage).
    window_start = models.DateTimeField(null=True, blank=True)
    from_allowance = models.PositiveIntegerField(default=0)
    from_topups = models.JSONField(default=list, blank=True, help_text="[[topup_id, tokens], ...]")
    from_overage = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    settled_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    release_reason = models.CharField(max_length=64, blank=True)
    # Usage recorded at settle, for unit economics and GPU rental.
    gpu_seconds = models.FloatField(default=0.0)
    node_name = models.CharField(max_length=64, blank=True)
    gpu_model = models.CharField(max_length=64, blank=True)
    # Set when the tokens count against an API key's monthly cap (a release gives them back).
    api_key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "idempotency_key"], name="reservation_unique_idempotency"),
            models.CheckConstraint(condition=models.Q(tokens__gt=0), name="reservation_tokens_positive"),
            models.CheckConstraint(condition=models.Q(gpu_seconds__gte=0), name="reservation_gpu_seconds_nonneg"),
        ]
        indexes = [
            models.Index(fields=["status", "settled_at"], name="reservation_status_settled"),
            models.Index(fields=["tenant", "settled_at"], name="reservation_tenant_settled"),
        ]

    def __str__(self) -> str:
        return f"reservation {self.pk} ({self.tokens} tokens, {self.status})"


class LedgerEntry(models.Model):
    """One append-only balance change: available and held token deltas for one bucket."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="ledger_entries")
    kind = models.CharField(max_length=16, choices=LedgerKind.choices)
    bucket = models.CharField(max_length=16, choices=LedgerBucket.choices)
    # available: spendable tokens of the bucket; held: tokens reserved by open reservations.
    available_delta = models.BigIntegerField(default=0)
    held_delta = models.BigIntegerField(default=0)
    window_start = models.DateTimeField(null=True, blank=True, help_text="Allowance window the row belongs to.")
    topup = models.ForeignKey("TopUp", on_delete=models.PROTECT, null=True, blank=True, related_name="ledger_entries")
    reservation = models.ForeignKey(
        TokenReservation, on_delete=models.PROTECT, null=True, blank=True, related_name="ledger_entries"
    )
    idempotency_key = models.CharField(max_length=160, null=True, blank=True, unique=True)  # noqa: DJ001
    note = models.CharField(max_length=255, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "ledger entries"
        indexes = [models.Index(fields=["tenant", "bucket", "window_start"], name="ledger_tenant_bucket_window")]

    def __str__(self) -> str:
        return f"{self.kind} {self.bucket} {self.available_delta:+d}/{self.held_delta:+d}"

    def save(self, *args, **kwargs):
        # Append-only: a row once written is history (PostgreSQL also refuses it by trigger).
        if self.pk is not None and not kwargs.get("force_insert"):
            raise LedgerImmutable("Ledger entries are append-only; write an adjustment instead.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise LedgerImmutable("Ledger entries are append-only and cannot be deleted.")


class TopUpPack(models.Model):
    """A purchasable top-up pack in the catalogue: tokens, price and how long they stay valid."""

    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=64)
    tokens = models.PositiveIntegerField()
    price = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3, default="USD")
    validity_days = models.PositiveIntegerField(default=365)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["tokens"]
        constraints = [
            models.CheckConstraint(condition=models.Q(tokens__gt=0), name="topuppack_tokens_positive"),
            models.CheckConstraint(condition=models.Q(price__gte=0), name="topuppack_price_nonneg"),
            models.CheckConstraint(condition=models.Q(validity_days__gt=0), name="topuppack_validity_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.tokens} tokens)"


class TopUp(models.Model):
    """Tokens a tenant bought (or was granted) on top of its allowance, spendable until expiry."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="topups")
    pack = models.ForeignKey(TopUpPack, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    tokens = models.PositiveIntegerField()
    remaining = models.BigIntegerField()
    price = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0.00"))
    currency = models.CharField(max_length=3, default="USD")
    purchased_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    expired_at = models.DateTimeField(null=True, blank=True, help_text="When the leftover was written off.")
    payment = models.ForeignKey("Payment", on_delete=models.PROTECT, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["expires_at", "id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(tokens__gt=0), name="topup_tokens_positive"),
            models.CheckConstraint(condition=models.Q(remaining__gte=0), name="topup_remaining_nonneg"),
        ]
        indexes = [models.Index(fields=["tenant", "expires_at"], name="topup_tenant_expiry")]

    def __str__(self) -> str:
        return f"top-up {self.pk}: {self.remaining}/{self.tokens} until {self.expires_at:%Y-%m-%d}"


class Payment(models.Model):
    """A charge made through a payment provider (top-up purchase, invoice settlement)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="payments")
    provider = models.CharField(max_length=32)
    reference = models.CharField(max_length=128, blank=True)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=PaymentStatus.choices)
    purpose = models.CharField(max_length=128)
    idempotency_key = models.CharField(max_length=160, null=True, blank=True, unique=True)  # noqa: DJ001
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.CheckConstraint(condition=models.Q(amount__gt=0), name="payment_amount_positive")]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency} via {self.provider} ({self.status})"


class PlanChange(models.Model):
    """A requested plan change: upgrades apply at once with a prorated charge, downgrades at period end."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="plan_changes")
    from_plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    to_plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=16, choices=PlanChangeKind.choices)
    requested_at = models.DateTimeField(default=timezone.now)
    effective_at = models.DateTimeField()
    applied_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    prorated_amount = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0.00"))
    currency = models.CharField(max_length=3, default="USD")
    prorated_tokens = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-requested_at"]

    def __str__(self) -> str:
        return f"{self.tenant}: {self.from_plan} -> {self.to_plan} ({self.kind})"


class CustomFee(models.Model):
    """A one-off charge (custom development, contract fee) billed on the invoice for its month."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="custom_fees")
    description = models.CharField(max_length=255)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3, default="USD")
    period_month = models.DateField(help_text="Any day in the month whose invoice carries this fee.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-period_month", "id"]
        constraints = [models.CheckConstraint(condition=models.Q(amount__gt=0), name="customfee_amount_positive")]

    def __str__(self) -> str:
        return f"{self.description}: {self.amount} {self.currency}"

    def clean(self) -> None:
        # The admin form goes through here; services.custom_fee_add applies the same rules.
        if self.amount is not None and self.amount <= 0:
            raise ValidationError({"amount": "A fee must be a positive amount."})
        if self.tenant_id and self.period_month:
            first = self.period_month.replace(day=1)
            invoice = Invoice.objects.filter(tenant_id=self.tenant_id, period_start=first).first()
            if invoice is not None and invoice.status != InvoiceStatus.DRAFT:
                raise ValidationError(
                    {"period_month": f"Invoice {invoice.number} for this month is {invoice.status}; bill it later."}
                )


class GpuCostRate(models.Model):
    """What one hour of one GPU of a model costs us (admin-editable), for margin figures."""

    gpu_model = models.CharField(max_length=64, unique=True, help_text="As nodes report it, e.g. A10, L20, H100.")
    hourly_cost = models.DecimalField(max_digits=10, decimal_places=4)
    currency = models.CharField(max_length=3, default="USD")
    tokens_per_gpu_hour = models.PositiveIntegerField(
        default=833_333, help_text="Expected throughput, for estimates (A10: 1,000,000 tokens ~ 1.2 GPU-hours)."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["gpu_model"]
        constraints = [models.CheckConstraint(condition=models.Q(hourly_cost__gte=0), name="gpucost_nonneg")]

    def __str__(self) -> str:
        return f"{self.gpu_model}: {self.hourly_cost} {self.currency}/h"


# --- Invoices ---------------------------------------------------------------------------


class Invoice(models.Model):
    """A tenant's monthly bill; line items and amounts are frozen once it leaves draft."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="invoices")
    number = models.CharField(max_length=32, unique=True)
    period_start = models.DateField()
    period_end = models.DateField(help_text="Exclusive: the first day of the next month.")
    status = models.CharField(max_length=16, choices=InvoiceStatus.choices, default=InvoiceStatus.DRAFT)
    currency = models.CharField(max_length=3, default="USD")
    total = models.DecimalField(
        max_digits=14, decimal_places=2, default=Decimal("0.00"), help_text="Everything the month charged."
    )
    amount_prepaid = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        default=Decimal("0.00"),
        help_text="Part of the total already paid when it was bought (top-up packs); not charged again.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    finalized_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    void_reason = models.CharField(max_length=255, blank=True)
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["-period_start", "tenant__name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "period_start"], name="invoice_unique_tenant_period"),
            models.CheckConstraint(
                condition=models.Q(amount_prepaid__gte=0) & models.Q(amount_prepaid__lte=models.F("total")),
                name="invoice_prepaid_within_total",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.number} ({self.status})"

    # Fields that may still change after finalizing: the state machine's own columns.
    STATE_FIELDS = frozenset({"status", "paid_at", "voided_at", "void_reason", "payment"})

    def save(self, *args, **kwargs):
        if self.pk is not None:
            old = Invoice.objects.filter(pk=self.pk).values().first()
            if old and old["status"] != InvoiceStatus.DRAFT:
                changed = {
                    f.name
                    for f in self._meta.concrete_fields
                    if old[f.attname] != getattr(self, f.attname) and f.name not in self.STATE_FIELDS
                }
                if changed:
                    raise InvoiceImmutable(
                        f"Invoice {old['number']} is {old['status']}; its {', '.join(sorted(changed))} cannot change."
                    )
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        if self.status != InvoiceStatus.DRAFT:
            raise InvoiceImmutable(f"Invoice {self.number} is {self.status} and cannot be deleted.")
        return super().delete(*args, **kwargs)

    @property
    def amount_due(self) -> Decimal:
        """What paying the invoice charges: the total less what was paid at purchase."""
        return self.total - self.amount_prepaid


class InvoiceLine(models.Model):
    """One line of an invoice: quantity x unit price = amount, in the invoice's currency."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    kind = models.CharField(max_length=16, choices=InvoiceLineKind.choices)
    description = models.CharField(max_length=255)
    quantity = models.DecimalField(max_digits=16, decimal_places=4)
    unit_price = models.DecimalField(max_digits=12, decimal_places=4)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    # The payment that already settled this line when it was bought (a top-up pack): the
    # line is on the invoice for the record, its amount is in amount_prepaid, never charged again.
    prepaid_by = models.ForeignKey(Payment, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["invoice", "position", "id"]

    def __str__(self) -> str:
        return f"{self.description}: {self.amount}"

    def save(self, *args, **kwargs):
        self._check_draft()
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        self._check_draft()
        return super().delete(*args, **kwargs)

    def _check_draft(self) -> None:
        status = Invoice.objects.filter(pk=self.invoice_id).values_list("status", flat=True).first()
        if status is not None and status != InvoiceStatus.DRAFT:
            raise InvoiceImmutable(f"Invoice {self.invoice_id} is {status}; its lines cannot change.")


# --- Usage alerts -----------------------------------------------------------------------


class AlertPolicy(models.Model):
    """A tenant's usage-alert thresholds; without a row the defaults apply (80 %, 100 %, top-ups < 10,000)."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="alert_policy")
    allowance_percents = models.JSONField(
        default=_default_percents, help_text="Alert when this share of the period's allowance is used, e.g. [80, 100]."
    )
    topup_below_tokens = models.PositiveBigIntegerField(
        null=True, blank=True, default=ALERT_DEFAULT_TOPUP_BELOW, help_text="Alert when top-ups fall below; empty: off."
    )
    email_enabled = models.BooleanField(default=True, help_text="Also e-mail the billing address.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "alert policies"

    def __str__(self) -> str:
        return f"alerts of {self.tenant_id}: {self.allowance_percents} / top-ups < {self.topup_below_tokens}"

    def clean(self) -> None:
        percents = self.allowance_percents
        if (
            not isinstance(percents, list)
            or len(percents) > 5
            or any(isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= 100 for p in percents)
            or len(set(percents)) != len(percents)
        ):
            raise ValidationError({"allowance_percents": "Give up to 5 different whole percentages from 1 to 100."})


class WebhookEndpoint(models.Model):
    """Where a tenant's alerts are POSTed, signed with HMAC-SHA256 of the body under this endpoint's secret."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=500)
    # Kept in the clear: signing needs it. Shown to the tenant's owner, rotatable.
    secret = models.CharField(max_length=64)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.url} ({self.tenant_id})"


class UsageAlert(models.Model):
    """One threshold crossed in one period: the unique key makes it fire exactly once."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="usage_alerts")
    kind = models.CharField(max_length=24, choices=AlertKind.choices)
    threshold = models.PositiveBigIntegerField(help_text="Percent of the allowance, or top-up tokens.")
    period_start = models.DateTimeField(help_text="The allowance window it belongs to.")
    allowance_tokens = models.PositiveBigIntegerField(default=0)
    value = models.BigIntegerField(help_text="Tokens used (allowance) or left (top-ups) when it fired.")
    fired_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-fired_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "kind", "threshold", "period_start"], name="usage_alert_once_per_period"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.threshold} for {self.tenant_id} ({self.period_start:%Y-%m-%d})"


class WebhookDelivery(models.Model):
    """One alert sent to one endpoint: the signed body, every attempt's outcome, retries with backoff."""

    alert = models.ForeignKey(UsageAlert, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    body = models.TextField(help_text="Exactly the bytes sent and signed (UTF-8 JSON).")
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=255, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    replay_of = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="replays")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="delivery_status_due")]

    def __str__(self) -> str:
        return f"delivery {self.pk} of alert {self.alert_id} ({self.status})"
