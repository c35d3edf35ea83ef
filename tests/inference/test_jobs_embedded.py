"""The embedded default's in-process executor: jobs for the local node run without Celery."""

from __future__ import annotations

import time

import pytest
from django.conf import settings as django_settings
from django.db import connection

from billing.selectors import quota_get
from billing.services import limits
from inference import embedded
from inference.models import JobStatus, SynthesisJob
from inference.services import job_create


@pytest.fixture
def embedded_mode(settings, tmp_path):
    settings.EMBEDDED = True
    settings.REDIS_URL = None  # the embedded default: in-process limits and signals
    settings.OUTPUTS_DIR = tmp_path
    limits.limits_reset_for_tests()
    yield
    embedded.executor_stop_sync()
    limits.limits_reset_for_tests()


def _wait_finished(job_id: int, timeout_s: float = 60.0) -> SynthesisJob:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = SynthesisJob.objects.get(pk=job_id)
        if job.is_finished:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


# serialized_rollback: the flush after an earlier transactional test would otherwise have dropped the migrated plans.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.skipif(
    django_settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"),
    reason="the in-memory SQLite test database locks whole tables between threads; "
    "tests/api runs the embedded executor through a real server on a SQLite file instead",
)
def test_queued_jobs_wait_for_the_executor_then_run_and_settle(make_tenant, embedded_mode):
    pro = make_tenant("pro")
    full = quota_get(tenant=pro).remaining
    # Accepted while the executor is down (e.g. the server restarting): it stays queued.
    waiting = job_create(tenant=pro, text="先排队，再合成。", voice="zh-female")
    assert SynthesisJob.objects.get(pk=waiting.pk).status == JobStatus.QUEUED

    embedded.executor_start_sync()  # picks up what was left queued
    job = _wait_finished(waiting.pk)
    assert job.status == JobStatus.SUCCEEDED and job.node.name == django_settings.EMBEDDED_NODE_NAME

    later = job_create(tenant=pro, text="执行器已经在运行。", voice="zh-male")  # dispatched on commit
    later = _wait_finished(later.pk)
    assert later.status == JobStatus.SUCCEEDED
    assert quota_get(tenant=pro).remaining == full - job.tokens - later.tokens
    assert connection.vendor == "postgresql"
