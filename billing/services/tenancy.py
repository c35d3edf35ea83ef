"""Tenancy writes: tenants, users, their seats (memberships) and invitations to a seat.

An invitation is a row (so it can be revoked and used once) whose link carries a random
secret kept only as its SHA-256. Accepting claims the row with a conditional UPDATE (open,
unexpired, unrevoked) in the same transaction that seats the user: two people racing on
one link seat one of them.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from billing.choices import MembershipRole
from billing.errors import InvitationInvalid
from billing.models import BillingAccount, Invitation, Membership, Tenant
from console.credentials import credential_generate, credential_matches, credential_prefix
from console.errors import Conflict, NotFound, PermissionDenied

if TYPE_CHECKING:
    from billing.models import Plan

INVITATION_VALID_FOR = dt.timedelta(days=7)


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


def _owner_check(*, tenant: Tenant, user, action: str) -> None:
    role = Membership.objects.filter(tenant_id=tenant.pk, user_id=user.pk).values_list("role", flat=True).first()
    if role != MembershipRole.OWNER:
        raise PermissionDenied(f"Only the organisation's owner can {action}.")


@transaction.atomic
def membership_remove(*, tenant: Tenant, membership_id: int, removed_by) -> Membership:
    """An owner takes a member's seat away (their keys stay the tenant's). The last owner stays."""
    _owner_check(tenant=tenant, user=removed_by, action="remove members")
    # Lock the tenant's seats (in id order) so two owners removing each other leave one.
    seats = list(Membership.objects.select_for_update().filter(tenant_id=tenant.pk).order_by("id"))
    membership = next((m for m in seats if m.pk == membership_id), None)
    if membership is None:
        raise NotFound("There is no such member.", code="member_not_found")
    owners = [m for m in seats if m.role == MembershipRole.OWNER]
    if membership.role == MembershipRole.OWNER and len(owners) == 1:
        raise Conflict("The organisation's only owner cannot be removed.", code="last_owner")
    membership.delete()
    return membership


def invitation_create(*, tenant: Tenant, email: str, invited_by, now=None) -> tuple[Invitation, str]:
    """An invitation for ``email`` (owners only) and its link secret, shown once."""
    _owner_check(tenant=tenant, user=invited_by, action="invite members")
    email = email.strip().lower()
    if Membership.objects.filter(tenant_id=tenant.pk, user__email__iexact=email).exists():
        raise Conflict(f"{email} is already a member of {tenant.name}.", code="already_member")
    now = now or timezone.now()
    cred = credential_generate("vfi")
    invitation = Invitation.objects.create(
        tenant=tenant,
        email=email,
        prefix=cred.prefix,
        secret_hash=cred.secret_hash,
        invited_by=invited_by,
        created_at=now,
        expires_at=now + INVITATION_VALID_FOR,
    )
    return invitation, cred.plaintext


def invitation_check(*, token: str, now=None) -> Invitation:
    """The open invitation a link's secret names; InvitationInvalid saying why not."""
    prefix = credential_prefix(token or "")
    invitation = (
        Invitation.objects.select_related("tenant", "tenant__plan", "invited_by").filter(prefix=prefix).first()
        if prefix
        else None
    )
    if invitation is None or not credential_matches(token, invitation.secret_hash):
        raise InvitationInvalid("This invitation link is not valid.")
    if invitation.revoked_at is not None:
        raise InvitationInvalid("This invitation was withdrawn; ask for a new one.", code="invitation_revoked")
    if invitation.accepted_at is not None:
        raise InvitationInvalid("This invitation has already been used.", code="invitation_used")
    if (now or timezone.now()) >= invitation.expires_at:
        raise InvitationInvalid("This invitation has expired; ask for a new one.", code="invitation_expired")
    if not invitation.tenant.is_active:
        raise InvitationInvalid("The organisation of this invitation is suspended.", code="tenant_inactive")
    return invitation


@transaction.atomic
def invitation_accept(*, token: str, user=None, username: str = "", password: str = "", now=None):
    """Seat the invited person once: ``user`` (logged in, with the invited e-mail) or a new
    user created with the invited e-mail. Returns (user, tenant)."""
    now = now or timezone.now()
    invitation = invitation_check(token=token, now=now)
    if user is not None:
        if (user.email or "").strip().lower() != invitation.email:
            raise PermissionDenied(
                f"This invitation is for {invitation.email}; log in with that account to accept it.",
                code="invitation_other_email",
            )
    else:
        if get_user_model().objects.filter(username__iexact=username).exists():
            raise Conflict("That username is taken.", code="username_taken")
        user = user_create(username=username, password=password, email=invitation.email)
    # The claim: exactly one acceptance wins, whatever races it.
    claimed = Invitation.objects.filter(
        pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now
    ).update(accepted_at=now, accepted_by=user)
    if claimed != 1:
        raise InvitationInvalid("This invitation has already been used.", code="invitation_used")
    try:
        membership_add(tenant=invitation.tenant, user=user)
    except Conflict:
        raise Conflict(f"You are already a member of {invitation.tenant.name}.", code="already_member") from None
    return user, invitation.tenant


def invitation_revoke(*, tenant: Tenant, invitation_id: int, revoked_by, now=None) -> Invitation:
    """An owner withdraws an open invitation; its link stops working at once."""
    _owner_check(tenant=tenant, user=revoked_by, action="withdraw invitations")
    invitation = Invitation.objects.filter(pk=invitation_id, tenant_id=tenant.pk).first()
    if invitation is None:
        raise NotFound("There is no such invitation.", code="invitation_not_found")
    changed = Invitation.objects.filter(pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True).update(
        revoked_at=now or timezone.now()
    )
    if changed != 1:
        raise Conflict("This invitation was already used or withdrawn.", code="invitation_closed")
    invitation.refresh_from_db()
    return invitation


def user_create(*, username: str, password: str, email: str = "", is_staff: bool = False):
    """A login (staff are superusers too: the admin is their console)."""
    user = get_user_model()(username=username, email=email, is_staff=is_staff, is_superuser=is_staff)
    user.set_password(password)
    user.save()
    return user
