"""Portal writes: sign-up, member invitations, and a customer's own plan changes and top-ups
(keyword-only, named <entity>_<action>), on top of billing's services.

Invitations are signed, expiring tokens rather than rows: the link itself carries the
tenant and the invited e-mail, so there is nothing to clean up and nothing to leak from
the database. A link can be used once per e-mail (the membership then exists).
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.urls import reverse

from billing.choices import MembershipRole, PlanChangeKind
from billing.selectors import membership_exists_for_email, membership_role_get, tenant_get_active, tenant_get_by_name
from billing.services import (
    invoice_draft_refresh,
    membership_add,
    plan_change,
    plan_get,
    tenant_create,
    topup_purchase,
    user_create,
)
from console.errors import Conflict, NotFound, PermissionDenied, VoxfleetError

if TYPE_CHECKING:
    from billing.models import PlanChange, Tenant, TopUp

INVITATION_SALT = "voxfleet.portal.invitation"
INVITATION_MAX_AGE_S = 7 * 24 * 3600
SIGNUP_PLAN_CODE = "free"


class InvitationInvalid(VoxfleetError):
    code = "invitation_invalid"
    status = 400


@dataclass(frozen=True)
class Invitation:
    """What an invitation link says: which tenant, which e-mail, who sent it."""

    tenant: Tenant
    email: str
    invited_by: str


@transaction.atomic
def signup_complete(*, username: str, email: str, password: str, organisation: str, time_zone: str = "UTC"):
    """A new customer: a tenant on the Free plan and its owner. Returns (user, tenant)."""
    User = get_user_model()
    if User.objects.filter(username__iexact=username).exists():
        raise Conflict("That username is taken.", code="username_taken")
    if tenant_get_by_name(name=organisation) is not None:
        raise Conflict("An organisation with that name already exists.", code="organisation_taken")
    try:
        zoneinfo.ZoneInfo(time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise VoxfleetError(f"Unknown time zone {time_zone!r}.", code="invalid_time_zone") from None
    user = user_create(username=username, password=password, email=email)
    try:
        tenant = tenant_create(
            name=organisation,
            plan=plan_get(code=SIGNUP_PLAN_CODE),
            owner=user,
            time_zone=time_zone,
            billing_email=email,
        )
    except IntegrityError:
        # Two sign-ups raced for the same slug; the atomic block undoes the user too.
        raise Conflict("An organisation with a similar name already exists.", code="organisation_taken") from None
    return user, tenant


def invitation_create(*, tenant: Tenant, email: str, invited_by) -> str:
    """A signed token for an invitation link; only the tenant's owner may invite."""
    if membership_role_get(tenant=tenant, user=invited_by) != MembershipRole.OWNER:
        raise PermissionDenied("Only the organisation's owner can invite members.")
    email = email.strip().lower()
    if membership_exists_for_email(tenant=tenant, email=email):
        raise Conflict(f"{email} is already a member of {tenant.name}.", code="already_member")
    return signing.dumps(
        {"t": tenant.pk, "e": email, "by": invited_by.get_username()}, salt=INVITATION_SALT, compress=True
    )


def invitation_send(*, tenant: Tenant, email: str, invited_by, base_url: str | None = None) -> str:
    """Create an invitation and e-mail its link. Returns the link (shown to the owner too)."""
    token = invitation_create(tenant=tenant, email=email, invited_by=invited_by)
    link = (base_url or settings.PUBLIC_URL).rstrip("/") + reverse("portal:invite_accept", args=[token])
    send_mail(
        subject=f"You are invited to {tenant.name} on Voxfleet",
        message=(
            f"{invited_by.get_username()} invited you to join {tenant.name} on Voxfleet.\n\n"
            f"Accept the invitation here (valid for 7 days):\n{link}\n"
        ),
        from_email=None,
        recipient_list=[email],
    )
    return link


def invitation_read(*, token: str) -> Invitation:
    try:
        data = signing.loads(token, salt=INVITATION_SALT, max_age=INVITATION_MAX_AGE_S)
    except signing.SignatureExpired:
        raise InvitationInvalid("This invitation has expired; ask for a new one.") from None
    except signing.BadSignature:
        raise InvitationInvalid("This invitation link is not valid.") from None
    tenant = tenant_get_active(tenant_id=data["t"])
    if tenant is None:
        raise NotFound("The organisation of this invitation no longer exists.")
    return Invitation(tenant=tenant, email=data["e"], invited_by=data["by"])


@transaction.atomic
def invitation_accept(*, token: str, user=None, username: str = "", password: str = ""):
    """Join the invited tenant as a member: as ``user`` if logged in, else as a new user.

    Returns (user, tenant).
    """
    invitation = invitation_read(token=token)
    if user is None:
        User = get_user_model()
        if User.objects.filter(username__iexact=username).exists():
            raise Conflict("That username is taken.", code="username_taken")
        user = user_create(username=username, password=password, email=invitation.email)
    try:
        membership_add(tenant=invitation.tenant, user=user)
    except Conflict:
        raise Conflict(f"You are already a member of {invitation.tenant.name}.", code="already_member") from None
    return user, invitation.tenant


# --- a customer's own plan changes and top-ups ------------------------------------------


def plan_change_request(*, tenant: Tenant, plan_code: str) -> PlanChange:
    """The owner's plan change from the plan page (billing's rules); an upgrade's prorated
    charge goes on this month's draft invoice at once, so the invoice page shows it."""
    change = plan_change(tenant=tenant, plan_code=plan_code)
    if change.kind == PlanChangeKind.UPGRADE and change.prorated_amount:
        invoice_draft_refresh(tenant=tenant)
    return change


def topup_buy(*, tenant: Tenant, pack_code: str, idempotency_key: str | None = None) -> TopUp:
    """The owner buys a top-up pack; its charge goes on this month's draft invoice at once."""
    topup = topup_purchase(tenant=tenant, pack_code=pack_code, idempotency_key=idempotency_key)
    invoice_draft_refresh(tenant=tenant)
    return topup
