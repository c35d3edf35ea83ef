"""Invitations are single-use, bound to the invited e-mail, expiring and revocable; owners remove members."""

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from billing.errors import InvitationInvalid
from billing.models import Invitation, Membership
from billing.services import invitation_accept, invitation_create, user_create
from console.errors import Conflict, PermissionDenied


def _join(token, username):
    c = Client()
    return c.post(
        f"/invite/{token}/", {"username": username, "password1": "a-long-passphrase", "password2": "a-long-passphrase"}
    )


@pytest.mark.django_db
def test_one_link_seats_one_person(owner_tenant):
    _, token = invitation_create(tenant=owner_tenant, email="one@example.com", invited_by=owner_tenant.test_owner)
    assert _join(token, "first").status_code == 302
    for stranger in ("second", "third"):
        r = _join(token, stranger)
        assert r.status_code == 400 and "already been used" in r.content.decode()
    assert not Membership.objects.filter(user__username__in=["second", "third"]).exists()
    assert Membership.objects.filter(tenant=owner_tenant).count() == 2


@pytest.mark.django_db
def test_link_is_bound_to_the_invited_email(owner_tenant):
    _, token = invitation_create(tenant=owner_tenant, email="Bob@Example.com", invited_by=owner_tenant.test_owner)
    mallory = user_create(username="mallory", password="pw-secret-123", email="mallory@example.com")
    with pytest.raises(PermissionDenied):
        invitation_accept(token=token, user=mallory)
    c = Client()
    c.force_login(mallory)
    c.post(f"/invite/{token}/")
    assert not Membership.objects.filter(user=mallory).exists()
    bob = user_create(username="bob", password="pw-secret-123", email="bob@example.com")
    invitation_accept(token=token, user=bob)
    assert Membership.objects.filter(user=bob, tenant=owner_tenant).exists()
    # A new account made through a link gets the invited address, whatever the holder wants.
    _, token2 = invitation_create(tenant=owner_tenant, email="carol@example.com", invited_by=owner_tenant.test_owner)
    _join(token2, "carol")
    assert Membership.objects.get(user__username="carol").user.email == "carol@example.com"


@pytest.mark.django_db
def test_link_expires(owner_tenant):
    past = timezone.now() - dt.timedelta(days=8)
    _, token = invitation_create(
        tenant=owner_tenant, email="late@example.com", invited_by=owner_tenant.test_owner, now=past
    )
    r = _join(token, "late")
    assert r.status_code == 400 and "expired" in r.content.decode()
    with pytest.raises(InvitationInvalid):
        invitation_accept(token=token, username="late2", password="pw-secret-123")


@pytest.mark.django_db
def test_owner_withdraws_an_invitation(owner_client, owner_tenant, teammate_client, outsider_client):
    inv, token = invitation_create(tenant=owner_tenant, email="gone@example.com", invited_by=owner_tenant.test_owner)
    assert "gone@example.com" in owner_client.get("/team/").content.decode()
    # Neither a teammate nor an outsider can withdraw it.
    teammate_client.post(f"/team/invitations/{inv.pk}/revoke")
    outsider_client.post(f"/team/invitations/{inv.pk}/revoke")
    inv.refresh_from_db()
    assert inv.revoked_at is None
    owner_client.post(f"/team/invitations/{inv.pk}/revoke")
    inv.refresh_from_db()
    assert inv.revoked_at is not None
    r = _join(token, "gone")
    assert r.status_code == 400 and "withdrawn" in r.content.decode()
    assert not Membership.objects.filter(user__username="gone").exists()


@pytest.mark.django_db
def test_owner_removes_a_member_who_then_loses_access(owner_client, owner_tenant, teammate, teammate_client):
    seat = Membership.objects.get(user=teammate, tenant=owner_tenant)
    assert teammate_client.get("/").status_code == 200
    # A member cannot remove the owner.
    owner_seat = Membership.objects.get(user=owner_tenant.test_owner, tenant=owner_tenant)
    teammate_client.post(f"/team/members/{owner_seat.pk}/remove")
    assert Membership.objects.filter(pk=owner_seat.pk).exists()
    r = owner_client.post(f"/team/members/{seat.pk}/remove", follow=True)
    assert "no longer has a seat" in r.content.decode()
    assert not Membership.objects.filter(pk=seat.pk).exists()
    assert teammate_client.get("/").status_code == 403
    assert teammate_client.get("/api/v1/quota").status_code == 403


@pytest.mark.django_db
def test_outsider_cannot_remove_members_and_last_owner_stays(owner_tenant, outsider_tenant, outsider_client):
    from billing.services import membership_remove

    owner_seat = Membership.objects.get(user=owner_tenant.test_owner, tenant=owner_tenant)
    outsider_client.post(f"/team/members/{owner_seat.pk}/remove")
    assert Membership.objects.filter(pk=owner_seat.pk).exists()
    with pytest.raises(Conflict):
        membership_remove(tenant=owner_tenant, membership_id=owner_seat.pk, removed_by=owner_tenant.test_owner)
    assert Invitation.objects.count() == 0
