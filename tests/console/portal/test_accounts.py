"""Sign-up, login, password reset by e-mail and member invitations."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail

from billing.models import Membership, Tenant


@pytest.mark.django_db
def test_signup_creates_free_tenant_and_owner_and_logs_in(client):
    r = client.post(
        "/signup/",
        {
            "organisation": "Acme Voices",
            "username": "acme",
            "email": "acme@example.com",
            "password1": "a-long-passphrase",
            "password2": "a-long-passphrase",
            "time_zone": "Asia/Shanghai",
        },
    )
    assert r.status_code == 302 and r["Location"] == "/"
    tenant = Tenant.objects.get(name="Acme Voices")
    assert tenant.plan.code == "free"
    assert tenant.time_zone == "Asia/Shanghai"
    m = Membership.objects.get(tenant=tenant)
    assert m.user.username == "acme" and m.role == "owner"
    assert client.get("/team/").status_code == 200


@pytest.mark.django_db
def test_signup_rejects_taken_names_and_bad_passwords(client, make_tenant):
    t = make_tenant("free", name="Taken Org")
    base = {"email": "x@example.com", "time_zone": "UTC"}
    r = client.post(
        "/signup/",
        {
            **base,
            "organisation": "taken org",
            "username": "new1",
            "password1": "a-long-passphrase",
            "password2": "a-long-passphrase",
        },
    )
    assert r.status_code == 200 and "already exists" in r.content.decode()
    r = client.post(
        "/signup/",
        {
            **base,
            "organisation": "Org 2",
            "username": t.test_owner.username,
            "password1": "a-long-passphrase",
            "password2": "a-long-passphrase",
        },
    )
    assert "username is taken" in r.content.decode()
    r = client.post(
        "/signup/", {**base, "organisation": "Org 3", "username": "new3", "password1": "short", "password2": "short"}
    )
    assert "too short" in r.content.decode()
    assert not get_user_model().objects.filter(username__in=["new1", "new3"]).exists()
    assert Tenant.objects.count() == 1


@pytest.mark.django_db
def test_login_logout(client, make_tenant):
    t = make_tenant("free")
    r = client.post("/accounts/login/", {"username": t.test_owner.username, "password": "pw-secret-123"})
    assert r.status_code == 302
    assert client.get("/team/").status_code == 200
    client.post("/accounts/logout/")
    r = client.get("/team/")
    assert r.status_code == 302 and r["Location"].startswith("/accounts/login/")


@pytest.mark.django_db
def test_password_reset_by_email(client, make_tenant, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    t = make_tenant("free")
    r = client.post("/accounts/password_reset/", {"email": t.test_owner.email})
    assert r.status_code == 302
    assert len(mail.outbox) == 1
    link = re.search(r"http://testserver(/accounts/reset/\S+)", mail.outbox[0].body).group(1)
    r = client.get(link, follow=True)
    assert "Choose a new password" in r.content.decode()
    set_url = r.redirect_chain[-1][0]
    r = client.post(set_url, {"new_password1": "brand-new-pass-9", "new_password2": "brand-new-pass-9"})
    assert r.status_code == 302
    t.test_owner.refresh_from_db()
    assert t.test_owner.check_password("brand-new-pass-9")


@pytest.mark.django_db
def test_owner_invites_member_who_accepts(owner_client, owner_tenant, client, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    r = owner_client.post("/team/", {"email": "newbie@example.com"})
    assert r.status_code == 200
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["newbie@example.com"]
    path = re.search(r"https?://[^/]+(/invite/\S+/)", mail.outbox[0].body).group(1)
    r = client.get(path)
    assert r.status_code == 200 and "Owner Co" in r.content.decode()
    r = client.post(path, {"username": "newbie", "password1": "a-long-passphrase", "password2": "a-long-passphrase"})
    assert r.status_code == 302
    m = Membership.objects.get(user__username="newbie")
    assert m.tenant == owner_tenant and m.role == "member"
    assert m.user.email == "newbie@example.com"
    # The same link cannot add the same person twice.
    r = client.post(path)
    assert Membership.objects.filter(user__username="newbie").count() == 1


@pytest.mark.django_db
def test_member_cannot_invite_and_tampered_link_is_refused(teammate_client, client, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    r = teammate_client.post("/team/", {"email": "x@example.com"})
    assert r.status_code == 302
    assert len(mail.outbox) == 0
    r = client.get("/invite/not-a-real-token/")
    assert r.status_code == 400 and "not valid" in r.content.decode()


@pytest.mark.django_db
def test_login_page_renders_with_shared_layout(client):
    r = client.get("/accounts/login/")
    body = r.content.decode()
    assert r.status_code == 200
    assert 'href="/static/css/voxfleet.css"' in body
    assert '<label for="id_username">' in body
    assert "cdn" not in body.lower()


@pytest.mark.django_db
def test_member_of_two_tenants_switches_and_the_api_follows(owner_tenant, outsider_tenant, client):
    from console.portal.services import invitation_accept, invitation_create

    outsider = outsider_tenant.memberships.get().user
    token = invitation_create(tenant=owner_tenant, email=outsider.email, invited_by=owner_tenant.test_owner)
    invitation_accept(token=token, user=outsider)
    client.force_login(outsider)
    assert "Outsider Ltd" in client.get("/").content.decode()
    assert client.get("/api/v1/quota").json()["plan_code"] == "pro"
    r = client.post("/team/switch", {"tenant": owner_tenant.pk}, follow=True)
    assert "now working in Owner Co" in r.content.decode()
    assert client.get("/api/v1/quota").json()["plan_code"] == "free"
    # A tenant the user is not in cannot be selected.
    from billing.services import plan_get, tenant_create, user_create

    stranger = tenant_create(
        name="Stranger", plan=plan_get(code="free"), owner=user_create(username="s", password="x-long-pass-1")
    )
    assert client.post("/team/switch", {"tenant": stranger.pk}).status_code == 404
