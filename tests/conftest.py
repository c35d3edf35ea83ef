"""Shared fixtures: data is built through the real services, never by hand."""

from __future__ import annotations

import pytest

from billing.services import api_key_create, plan_get, tenant_create, user_create


@pytest.fixture
def make_tenant(db):
    """Factory: a tenant on a plan with its owner user and one API key."""
    counter = {"n": 0}

    def make(plan: str = "pro", *, name: str | None = None):
        counter["n"] += 1
        n = counter["n"]
        owner = user_create(username=f"owner{n}-{plan}", password="pw-secret-123", email=f"owner{n}@example.com")
        tenant = tenant_create(name=name or f"Tenant {n} {plan}", plan=plan_get(code=plan), owner=owner)
        key, plaintext = api_key_create(tenant=tenant, name="test")
        tenant.test_owner = owner
        tenant.test_api_key = plaintext
        return tenant

    return make


@pytest.fixture
def staff_user(db):
    return user_create(username="staff", password="pw-secret-123", email="staff@example.com", is_staff=True)


@pytest.fixture(scope="session")
def live(tmp_path_factory):
    """One real server (uvicorn, plus a Celery node worker with REDIS_URL) for the end-to-end API tests."""
    from tests.support.live_server import live_server_start

    server = live_server_start(tmp_path_factory.mktemp("e2e"))
    yield server
    server.stop()
