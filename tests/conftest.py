"""Shared fixtures: data is built through the real services, never by hand.

The one owner / teammate / outsider set (healthchecks' habit): ``owner_tenant`` with its
``owner``, a ``teammate`` seated in the same tenant, and an ``outsider`` who owns another
tenant (``outsider_tenant``) and must get 403/404 on everything of the owner's. Each has a
logged-in Django test client (``owner_client``, ``teammate_client``, ``outsider_client``),
and so does ``staff_user`` (``staff_client``). ``make_tenant`` and ``make_member`` build
more of the same when a test needs them.

Jobs: ``local_node`` (online because its agent said hello) and ``run_job``, which accepts a job
and runs it there as the executor would; ``fleet_routing`` for tests that route jobs across the
nodes of a real fleet instead.
"""

from __future__ import annotations

import pytest
from django.test import Client

from billing.choices import MembershipRole
from billing.services import api_key_create, membership_add, plan_get, tenant_create, user_create
from inference.services import job_create, job_execute
from tests.support.fleet import node_online
from tests.support.limits import TEST_NODE_QUEUES, limits_clear

PASSWORD = "pw-secret-123"


def logged_in(user) -> Client:
    """A Django test client with ``user``'s session."""
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def make_tenant(db):
    """Factory: a tenant on a plan (in ``time_zone``) with its owner user and one API key."""
    counter = {"n": 0}

    def make(plan: str = "pro", *, name: str | None = None, time_zone: str = "UTC"):
        counter["n"] += 1
        n = counter["n"]
        owner = user_create(username=f"owner{n}-{plan}", password=PASSWORD, email=f"owner{n}@example.com")
        tenant = tenant_create(
            name=name or f"Tenant {n} {plan}", plan=plan_get(code=plan), owner=owner, time_zone=time_zone
        )
        key, plaintext = api_key_create(tenant=tenant, name="test")
        tenant.test_owner = owner
        tenant.test_api_key = plaintext
        return tenant

    return make


@pytest.fixture
def make_member(db):
    """Factory: a new user seated in ``tenant`` (a member unless ``role`` says otherwise)."""

    def make(tenant, username: str = "teammate", *, email: str | None = None, role: str = MembershipRole.MEMBER):
        user = user_create(username=username, password=PASSWORD, email=email or f"{username}@example.com")
        membership_add(tenant=tenant, user=user, role=role)
        return user

    return make


@pytest.fixture
def owner_tenant(make_tenant):
    """The tenant the owner / teammate / outsider tests are about (Free plan)."""
    return make_tenant("free", name="Owner Co")


@pytest.fixture
def owner(owner_tenant):
    return owner_tenant.test_owner


@pytest.fixture
def teammate(owner_tenant, make_member):
    """A member (not the owner) of ``owner_tenant``."""
    return make_member(owner_tenant, "mate", email="mate@example.com")


@pytest.fixture
def outsider_tenant(db):
    """Another tenant (Pro plan), owned by ``outsider``."""
    user = user_create(username="outsider", password=PASSWORD, email="out@example.com")
    tenant = tenant_create(name="Outsider Ltd", plan=plan_get(code="pro"), owner=user)
    tenant.test_owner = user
    return tenant


@pytest.fixture
def outsider(outsider_tenant):
    """A signed-up customer with no seat in ``owner_tenant`` and no staff rights."""
    return outsider_tenant.test_owner


@pytest.fixture
def staff_user(db):
    return user_create(username="staff", password=PASSWORD, email="staff@example.com", is_staff=True)


@pytest.fixture
def owner_client(owner):
    return logged_in(owner)


@pytest.fixture
def teammate_client(teammate):
    return logged_in(teammate)


@pytest.fixture
def outsider_client(outsider):
    return logged_in(outsider)


@pytest.fixture
def staff_client(staff_user):
    return logged_in(staff_user)


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """Each test gets its own channel-layer instance.

    The layer is a process-wide object, and channels_redis binds its receive locks to the
    event loop that first used them: a test's loop (WebsocketCommunicator) would otherwise
    leave locks that a later test's in-thread server, on its own loop, cannot take.
    """
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


# More than this many pooled PostgreSQL connections out after a test: start a fresh pool.
POOL_LEFT_OUT_MAX = 8


@pytest.fixture(autouse=True)
def pooled_connections_back():
    """Give the connection pool back what dead threads still hold.

    Each async test runs on its own event loop, and database work runs on that loop's
    executor threads (and asgiref's per-loop thread); when the loop closes, those threads end
    with their connection still checked out of the pool (20 at most), and nothing returns it.
    A server keeps one loop and its threads for its life, so this is the test harness's own
    leak: past a few, the pool is closed and a fresh one opened (what Django itself does when
    a test changes TIME_ZONE).
    """
    yield
    from django.db import connections

    connection = connections["default"]
    pool = getattr(connection, "pool", None)
    if pool is None:
        return
    stats = pool.get_stats()
    if stats.get("pool_size", 0) - stats.get("pool_available", 0) > POOL_LEFT_OUT_MAX:
        connection.close()
        connection.close_pool()


@pytest.fixture
def local_node(db, settings, tmp_path):
    """The local node, online (its agent said hello), with outputs in a temp folder."""
    settings.OUTPUTS_DIR = tmp_path / "outputs"
    return node_online(settings.EMBEDDED_NODE_NAME, hello={"engine": "cpu"}, channel_name="test.local-agent")


@pytest.fixture
def run_job(local_node):
    """Accept a job through jobs' own service and run it on the local node, as the executor would."""

    def run(tenant, text="你好，世界", voice="zh-female", instruction=None, seed=7):
        # job_create queues the job on the local node (accepted -> queued in its own
        # transaction); the executor then claims it.
        job = job_create(tenant=tenant, text=text, voice=voice, instruction=instruction, seed=seed)
        job_execute(job_id=job.pk, node_name=local_node.name)
        job.refresh_from_db()
        return job

    return run


@pytest.fixture
def fleet_routing(settings, tmp_path):
    """Jobs routed as in a real fleet (not all to the embedded single node), files in tmp, and
    no rate-limit counter or node-queue message left over from another test."""
    settings.EMBEDDED = False
    settings.OUTPUTS_DIR = tmp_path / "outputs"
    settings.VAR_DIR = tmp_path / "var"
    limits_clear(TEST_NODE_QUEUES)
    yield
    limits_clear(TEST_NODE_QUEUES)


@pytest.fixture
def published():
    """Messages handed to the broker (Celery's own publish, not eager): (routing key, task, args, kwargs)."""
    from celery.signals import before_task_publish

    sent = []

    def record(sender=None, body=None, routing_key=None, **kwargs):
        args, task_kwargs, _ = body
        sent.append((routing_key, sender, list(args), dict(task_kwargs)))

    before_task_publish.connect(record, weak=False)
    yield sent
    before_task_publish.disconnect(record)


@pytest.fixture(scope="session")
def live(tmp_path_factory):
    """One real server (uvicorn, plus a Celery node worker with REDIS_URL) for the end-to-end API tests."""
    from tests.support.live_server import live_server_start

    server = live_server_start(tmp_path_factory.mktemp("e2e"))
    yield server
    server.stop()
