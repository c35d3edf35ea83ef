"""Portal reads: which tenant a user acts for, and the data pages show."""

from __future__ import annotations

from billing.models import Membership, Tenant


def membership_for_user(*, user) -> Membership | None:
    """The user's first membership (a user normally belongs to one tenant)."""
    if not user.is_authenticated:
        return None
    return Membership.objects.select_related("tenant", "tenant__plan").filter(user=user).order_by("created_at").first()


def tenant_members(*, tenant: Tenant) -> list[Membership]:
    return list(Membership.objects.select_related("user").filter(tenant=tenant).order_by("created_at"))
