"""Tenancy reads: which tenant a user acts for, seats, and tenants by name or id.

"Which tenant is this request for?" has one answer for the portal and the API's session
authentication: the tenant remembered in the session under ``billing.choices.SESSION_TENANT_KEY``
if the user still has a seat there, else the user's oldest seat.
"""

from __future__ import annotations

from django.db.models import Count
from django.utils import timezone

from billing.models import Invitation, Membership, Plan, Tenant


def membership_for_user(*, user, tenant_id=None) -> Membership | None:
    """The seat ``user`` acts through: in ``tenant_id`` if they have one there, else their oldest.

    None for an anonymous user or one without any seat. A ``tenant_id`` the user has no seat
    in is ignored (membership-checked), never trusted.
    """
    if user is None or not user.is_authenticated or getattr(user, "pk", None) is None:
        return None
    memberships = Membership.objects.select_related("tenant", "tenant__plan").filter(user_id=user.pk)
    if tenant_id is not None:
        try:
            selected = memberships.filter(tenant_id=int(tenant_id)).first()
        except (TypeError, ValueError):
            selected = None
        if selected is not None:
            return selected
    return memberships.order_by("created_at", "id").first()


def tenant_for_user(*, user, tenant_id=None) -> Tenant | None:
    """The tenant ``user`` acts for (see ``membership_for_user``); None if they have no seat."""
    membership = membership_for_user(user=user, tenant_id=tenant_id)
    return membership.tenant if membership is not None else None


def membership_list_for_user(*, user) -> list[Membership]:
    """The user's seats, oldest first, with their tenants."""
    return list(Membership.objects.select_related("tenant").filter(user_id=user.pk).order_by("created_at", "id"))


def membership_list_for_tenant(*, tenant: Tenant) -> list[Membership]:
    """The tenant's members, in the order they joined."""
    return list(Membership.objects.select_related("user").filter(tenant_id=tenant.pk).order_by("created_at"))


def membership_role_get(*, tenant: Tenant, user) -> str | None:
    """The user's role in the tenant (``billing.choices.MembershipRole``), None without a seat."""
    return Membership.objects.filter(tenant_id=tenant.pk, user_id=user.pk).values_list("role", flat=True).first()


def membership_exists_for_email(*, tenant: Tenant, email: str) -> bool:
    """Whether someone with this e-mail (any case) already has a seat in the tenant."""
    return Membership.objects.filter(tenant_id=tenant.pk, user__email__iexact=email).exists()


def tenant_get_by_name(*, name: str) -> Tenant | None:
    """The tenant called ``name``, ignoring case (sign-up keeps names unique that way)."""
    return Tenant.objects.select_related("plan").filter(name__iexact=name).order_by("pk").first()


def tenant_get_active(*, tenant_id) -> Tenant | None:
    """The tenant with this id if it exists and is not suspended."""
    return Tenant.objects.select_related("plan").filter(pk=tenant_id, is_active=True).first()


def tenant_list() -> list[Tenant]:
    """Every tenant with its plan, by name (the staff overview)."""
    return list(Tenant.objects.select_related("plan").order_by("name"))


def invitation_list_open_for_tenant(*, tenant: Tenant, now=None) -> list[Invitation]:
    """The tenant's invitations still waiting for an answer (unused, not withdrawn, unexpired)."""
    return list(
        Invitation.objects.filter(
            tenant_id=tenant.pk, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now or timezone.now()
        )
        .select_related("invited_by")
        .order_by("-created_at")
    )


def tenant_count_by_plan() -> dict[str, int]:
    """Tenants per plan name, every plan listed in catalogue order (one query)."""
    return {p.name: p.n for p in Plan.objects.annotate(n=Count("tenants")).order_by("sort_order", "name")}
