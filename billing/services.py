"""Billing writes: tenants, members and API keys (keyword-only, named <entity>_<action>)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from billing.models import ApiKey, Membership, MembershipRole, Plan, Tenant
from console.credentials import credential_generate, credential_matches, credential_prefix
from console.errors import NotFound, VoxfleetError


class UnknownPlan(VoxfleetError):
    code = "unknown_plan"
    status = 400


def plan_get(*, code: str) -> Plan:
    try:
        return Plan.objects.get(code=code)
    except Plan.DoesNotExist:
        raise UnknownPlan(f"There is no plan {code!r}.") from None


@transaction.atomic
def tenant_create(*, name: str, plan: Plan, owner, time_zone: str = "UTC", billing_email: str = "") -> Tenant:
    tenant = Tenant(name=name, slug=slugify(name)[:64] or "tenant", plan=plan, time_zone=time_zone)
    tenant.billing_email = billing_email or getattr(owner, "email", "")
    tenant.full_clean()
    tenant.save()
    Membership.objects.create(tenant=tenant, user=owner, role=MembershipRole.OWNER)
    return tenant


def user_create(*, username: str, password: str, email: str = "", is_staff: bool = False):
    user = get_user_model()(username=username, email=email, is_staff=is_staff, is_superuser=is_staff)
    user.set_password(password)
    user.save()
    return user


def api_key_create(*, tenant: Tenant, name: str, created_by=None) -> tuple[ApiKey, str]:
    """Returns the stored key and its plaintext, which is never retrievable again."""
    cred = credential_generate("vf")
    key = ApiKey.objects.create(
        tenant=tenant, name=name, prefix=cred.prefix, secret_hash=cred.secret_hash, created_by=created_by
    )
    return key, cred.plaintext


def api_key_revoke(*, key: ApiKey) -> ApiKey:
    if key.revoked_at is None:
        ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        key.refresh_from_db()
    return key


def api_key_authenticate(*, plaintext: str) -> ApiKey:
    """The active key for a presented secret; raises NotFound (mapped to 401 by callers)."""
    prefix = credential_prefix(plaintext or "")
    key = ApiKey.objects.select_related("tenant", "tenant__plan").filter(prefix=prefix).first() if prefix else None
    if key is None or not key.is_active or not credential_matches(plaintext, key.secret_hash):
        raise NotFound("Invalid or revoked API key.", code="invalid_api_key")
    # Last-used is advisory: a plain UPDATE, no lock, so hot keys don't serialise on it.
    now = timezone.now()
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    key.last_used_at = now
    return key
