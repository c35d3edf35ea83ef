"""Tenancy writes: tenants, users and their seats (memberships)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils.text import slugify

from billing.choices import MembershipRole
from billing.models import BillingAccount, Membership, Tenant
from console.errors import Conflict

if TYPE_CHECKING:
    from billing.models import Plan


@transaction.atomic
def tenant_create(*, name: str, plan: Plan, owner, time_zone: str = "UTC", billing_email: str = "") -> Tenant:
    """A new tenant on ``plan`` with ``owner`` seated as its owner, and its (empty) billing account."""
    tenant = Tenant(name=name, slug=slugify(name)[:64] or "tenant", plan=plan, time_zone=time_zone)
    tenant.billing_email = billing_email or getattr(owner, "email", "")
    tenant.full_clean()
    tenant.save()
    Membership.objects.create(tenant=tenant, user=owner, role=MembershipRole.OWNER)
    BillingAccount.objects.create(tenant=tenant)
    return tenant


def membership_add(*, tenant: Tenant, user, role: str = MembershipRole.MEMBER) -> Membership:
    """Seat ``user`` in ``tenant``; Conflict if they already have a seat there."""
    membership, created = Membership.objects.get_or_create(tenant=tenant, user=user, defaults={"role": role})
    if not created:
        raise Conflict(f"{user} is already a member of {tenant.name}.", code="already_member")
    return membership


def user_create(*, username: str, password: str, email: str = "", is_staff: bool = False):
    """A login (staff are superusers too: the admin is their console)."""
    user = get_user_model()(username=username, email=email, is_staff=is_staff, is_superuser=is_staff)
    user.set_password(password)
    user.save()
    return user
