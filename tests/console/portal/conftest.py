"""Portal fixtures: an owner, a teammate and an outsider, each with a logged-in client."""

from __future__ import annotations

import pytest
from django.test import Client

from billing.services import plan_get, tenant_create, user_create
from console.portal.services import invitation_accept, invitation_create


@pytest.fixture(autouse=True)
def _fresh_cache():
    """The staff overview caches its figures; each test starts without them."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


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


@pytest.fixture
def local_node(db, settings, tmp_path):
    """The local node, online, with outputs in a temp folder."""
    from fleetagent.models import Node
    from fleetagent.services import node_create

    settings.OUTPUTS_DIR = tmp_path / "outputs"
    node, _ = node_create(name=settings.EMBEDDED_NODE_NAME)
    Node.objects.filter(pk=node.pk).update(state="online")
    node.refresh_from_db()
    return node


@pytest.fixture
def run_job(local_node):
    """Accept a job through jobs' own service and run it on the local node, as the executor would."""
    from inference.models import SynthesisJob
    from inference.services import job_create, job_execute

    def run(tenant, text="你好，世界", voice="zh-female", instruction=None, seed=7):
        job = job_create(tenant=tenant, text=text, voice=voice, instruction=instruction, seed=seed)
        # The dispatcher's step (accepted -> queued on this node); the executor then claims it.
        SynthesisJob.objects.filter(pk=job.pk, status="accepted").update(status="queued", node=local_node)
        job_execute(job_id=job.pk, node_name=local_node.name)
        job.refresh_from_db()
        return job

    return run
