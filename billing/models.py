"""Billing models: plans, tenants and their members, API keys."""

from __future__ import annotations

import zoneinfo
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models


class AllowancePeriod(models.TextChoices):
    DAY = "day", "per day (tenant's time zone)"
    MONTH = "month", "per billing month"
    CONTRACT = "contract", "per contract"


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


class MembershipRole(models.TextChoices):
    OWNER = "owner", "Owner"
    MEMBER = "member", "Member"


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

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.tenant})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
