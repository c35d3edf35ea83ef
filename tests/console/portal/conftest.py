"""Portal fixtures: a fresh cache, the local node and a job run on it (owner / teammate /
outsider and their clients are the shared set in tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _fresh_cache():
    """The staff overview caches its figures; each test starts without them."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def local_node(db, settings, tmp_path):
    """The local node, online (its agent said hello), with outputs in a temp folder."""
    from fleetagent.services import node_agent_connect, node_create

    settings.OUTPUTS_DIR = tmp_path / "outputs"
    node, _ = node_create(name=settings.EMBEDDED_NODE_NAME)
    return node_agent_connect(node_id=node.pk, channel_name="test.local-agent", hello={"engine": "cpu"})


@pytest.fixture
def run_job(local_node):
    """Accept a job through jobs' own service and run it on the local node, as the executor would."""
    from inference.services import job_create, job_execute

    def run(tenant, text="你好，世界", voice="zh-female", instruction=None, seed=7):
        # job_create queues the job on the local node (accepted -> queued in its own
        # transaction); the executor then claims it.
        job = job_create(tenant=tenant, text=text, voice=voice, instruction=instruction, seed=seed)
        job_execute(job_id=job.pk, node_name=local_node.name)
        job.refresh_from_db()
        return job

    return run
