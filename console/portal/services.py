"""Portal writes: sign-up, member invitations, and a customer's own plan changes and top-ups
(keyword-only, named <entity>_<action>), on top of billing's services.

Invitations are billing's rows (billing.services.invitation_*): one e-mail, used once,
expiring and revocable; the link carries a secret kept only as a hash.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.urls import reverse

from billing.choices import PlanChangeKind
from billing.selectors import tenant_get_by_name
from billing.services import (
    INVITATION_VALID_FOR,
    invitation_check,
    invoice_draft_refresh,
    plan_change,
    plan_get,
    tenant_create,
    topup_purchase,
    user_create,
)
from billing.services import invitation_accept as billing_invitation_accept
from billing.services import invitation_create as billing_invitation_create
from console.errors import Conflict, VoxfleetError

if TYPE_CHECKING:
    from billing.models import PlanChange, Tenant, TopUp

SIGNUP_PLAN_CODE = "free"


@dataclass(frozen=True)
class Invitation:
    """What an invitation link says: which tenant, which e-mail, who sent it."""

    tenant: Tenant
    email: str
    invited_by: str
    expires_at: dt.datetime


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
    """The secret token of a new invitation link (billing's rules: owners only, one e-mail,
    single use, expiring, revocable)."""
    _, token = billing_invitation_create(tenant=tenant, email=email, invited_by=invited_by)
    return token


def invitation_send(*, tenant: Tenant, email: str, invited_by, base_url: str | None = None) -> str:
    """Create an invitation and e-mail its link. Returns the link (shown to the owner too)."""
    token = invitation_create(tenant=tenant, email=email, invited_by=invited_by)
    link = (base_url or settings.PUBLIC_URL).rstrip("/") + reverse("portal:invite_accept", args=[token])
    days = INVITATION_VALID_FOR.days
    send_mail(
        subject=f"You are invited to {tenant.name} on Voxfleet",
        message=(
            f"{invited_by.get_username()} invited you to join {tenant.name} on Voxfleet.\n\n"
            f"Accept the invitation here (valid for {days} days, once, for {email.strip().lower()}):\n{link}\n"
        ),
        from_email=None,
        recipient_list=[email],
    )
    return link


def invitation_read(*, token: str) -> Invitation:
    invitation = invitation_check(token=token)
    return Invitation(
        tenant=invitation.tenant,
        email=invitation.email,
        invited_by=invitation.invited_by.get_username() if invitation.invited_by else "",
        expires_at=invitation.expires_at,
    )


def invitation_accept(*, token: str, user=None, username: str = "", password: str = ""):
    """Join the invited tenant as a member: as ``user`` if logged in (with the invited
    e-mail), else as a new user. Returns (user, tenant)."""
    return billing_invitation_accept(token=token, user=user, username=username, password=password)


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
