"""Portal fixtures: an owner, a teammate and an outsider, each with a logged-in client."""

from __future__ import annotations

import pytest
from django.test import Client

from billing.services import plan_get, tenant_create, user_create
from console.portal.services import invitation_accept, invitation_create


@pytest.fixture
def owner_tenant(make_tenant):
    return make_tenant("free", name="Owner Co")


@pytest.fixture
def owner_client(owner_tenant):
    c = Client()
    c.force_login(owner_tenant.test_owner)
    return c


@pytest.fixture
def teammate(owner_tenant):
    token = invitation_create(tenant=owner_tenant, email="mate@example.com", invited_by=owner_tenant.test_owner)
    user, _ = invitation_accept(token=token, username="mate", password="pw-secret-123")
    return user


@pytest.fixture
def teammate_client(teammate):
    c = Client()
    c.force_login(teammate)
    return c


@pytest.fixture
def outsider_tenant(db):
    user = user_create(username="outsider", password="pw-secret-123", email="out@example.com")
    return tenant_create(name="Outsider Ltd", plan=plan_get(code="pro"), owner=user)


@pytest.fixture
def outsider_client(outsider_tenant):
    c = Client()
    c.force_login(outsider_tenant.memberships.get().user)
    return c
