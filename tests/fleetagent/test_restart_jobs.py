"""Restart and agent crash with real jobs: nothing lost, nothing charged twice.

The fleet side (heartbeat sweep, NodeRuntime.restart) drives the jobs app's real services
(job_create / job_execute / job_requeue_from_node) and billing's real quota.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.db import connection, transaction
from django.utils import timezone

from billing.models import TokenReservation
from billing.selectors import quota_get
from fleetagent.agent.runtime import NodeRuntime
from fleetagent.agent.stats import JobStats
from fleetagent.models import Node, NodeState
from fleetagent.services import node_action_request, node_states_sweep
from inference.models import JobStatus, SynthesisJob
from inference.services import job_create, job_execute
from tests.support.fleet import node_online
from tests.support.jobs import job_claim_as_worker

pytestmark = pytest.mark.usefixtures("fleet_routing")


def _job(tenant, text="你好，欢迎使用语音合成。"):
    return job_create(tenant=tenant, text=text, voice="zh-female")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_agent_crash_requeues_in_flight_job_which_is_charged_once(make_tenant, settings):
    settings.NODE_OFFLINE_AFTER_S = 10
    pro = make_tenant("pro")
    first = node_online("t-fleet-a")
    full = quota_get(tenant=pro).remaining
    job = job_claim_as_worker(_job(pro))
    assert job.node == first and job.status == JobStatus.RUNNING
    second = node_online("t-fleet-b")

    # Host A's agent dies: no heartbeat for more than NODE_OFFLINE_AFTER_S.
    Node.objects.filter(pk=first.pk).update(last_seen_at=timezone.now() - timedelta(seconds=11))
    changed = node_states_sweep()

    first.refresh_from_db()
    job.refresh_from_db()
    assert changed == [first.pk] and first.state == NodeState.OFFLINE
    assert job.status == JobStatus.QUEUED and job.node == second and job.requeues == 1
    assert quota_get(tenant=pro).reserved == job.tokens  # held once, not twice

    job_execute(job_id=job.pk, node_name="t-fleet-b")
    assert job_execute(job_id=job.pk, node_name="t-fleet-a") is None  # the dead host's late redelivery
    job.refresh_from_db()
    after = quota_get(tenant=pro)
    assert job.status == JobStatus.SUCCEEDED and job.node == second
    assert after.used == job.tokens and after.reserved == 0 and after.remaining == full - job.tokens


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.skipif(
    django_settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"),
    reason="a worker thread writing while the restart polls: SQLite's in-memory shared-cache test "
    "database locks whole tables (SQLITE_LOCKED, no busy wait); runs on PostgreSQL",
)
async def test_restart_waits_for_in_flight_job_then_reloads_and_serves_the_queue(make_tenant):
    pro = await database_sync_to_async(make_tenant)("pro")
    await database_sync_to_async(node_online)("t-fleet-a")
    full = (await database_sync_to_async(quota_get)(tenant=pro)).remaining
    running = await database_sync_to_async(_job)(pro)
    waiting = await database_sync_to_async(_job, thread_sensitive=False)(pro, text="第二句话。")
    node = await database_sync_to_async(Node.objects.get)(name="t-fleet-a")
    record = await database_sync_to_async(node_action_request)(node=node, action="restart")
    assert record.outcome == "pending"

    # Hold the job's token-reservation row: the worker's closing transaction (job -> succeeded
    # + settle) waits on it, so the job stays "running" until the restart is under way, however
    # fast the engine is. Released once the restart has drained and counted its in-flight jobs.
    locked, release = threading.Event(), threading.Event()

    def hold_account_row():
        try:
            with transaction.atomic():
                TokenReservation.objects.select_for_update().get(pk=running.reservation_id)
                locked.set()
                release.wait(60)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_account_row)
    holder.start()
    assert await asyncio.to_thread(locked.wait, 30)
    worker = threading.Thread(target=job_execute, kwargs={"job_id": running.pk, "node_name": "t-fleet-a"})
    worker.start()  # the node's worker is mid-job when the restart begins

    async def status(job):
        return await database_sync_to_async(lambda: SynthesisJob.objects.get(pk=job.pk).status)()

    deadline = time.monotonic() + 30
    while await status(running) == JobStatus.QUEUED:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    runtime = NodeRuntime(node_name="t-fleet-a", stats=JobStats(), drain_timeout_s=120)
    restart = asyncio.create_task(runtime.restart())
    while runtime.restart_waiting_for is None:  # the restart has drained and counted what is in flight
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert runtime.restart_waiting_for == 1
    assert not restart.done()  # it is waiting for the in-flight job
    release.set()
    detail = await restart
    await asyncio.to_thread(worker.join, 60)
    await asyncio.to_thread(holder.join, 60)

    assert detail["jobs_finished"] == 1 and detail["jobs_requeued"] == 0
    assert detail["engine_reloaded"] is True and {"vram_before_mb", "vram_after_mb"} <= detail.keys()
    assert await status(running) == JobStatus.SUCCEEDED
    assert runtime.draining is False  # resumed after the reload

    # The queue is served after the restart; a duplicate delivery of the first job does nothing.
    await database_sync_to_async(job_execute, thread_sensitive=False)(job_id=waiting.pk, node_name="t-fleet-a")
    again = await database_sync_to_async(job_execute, thread_sensitive=False)(job_id=running.pk, node_name="t-fleet-a")
    assert again is None
    assert await status(waiting) == JobStatus.SUCCEEDED
    after = await database_sync_to_async(quota_get)(tenant=pro)
    assert after.used == running.tokens + waiting.tokens
    assert after.reserved == 0 and after.remaining == full - running.tokens - waiting.tokens


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
async def test_restart_requeues_a_job_that_does_not_finish_in_time(make_tenant):
    pro = await database_sync_to_async(make_tenant)("pro")
    await database_sync_to_async(node_online)("t-fleet-a")
    full = (await database_sync_to_async(quota_get)(tenant=pro)).remaining
    stuck = await database_sync_to_async(lambda: job_claim_as_worker(_job(pro)))()
    await database_sync_to_async(node_online)("t-fleet-b")
    node = await database_sync_to_async(Node.objects.get)(name="t-fleet-a")
    await database_sync_to_async(node_action_request)(node=node, action="restart")  # A leaves dispatch

    runtime = NodeRuntime(node_name="t-fleet-a", stats=JobStats(), drain_timeout_s=0.5)
    detail = await runtime.restart()

    assert detail["jobs_finished"] == 0 and detail["jobs_requeued"] == 1
    moved = await database_sync_to_async(SynthesisJob.objects.select_related("node").get)(pk=stuck.pk)
    assert moved.status == JobStatus.QUEUED and moved.node.name == "t-fleet-b" and moved.requeues == 1
    await database_sync_to_async(job_execute, thread_sensitive=False)(job_id=stuck.pk, node_name="t-fleet-b")
    late = await database_sync_to_async(job_execute, thread_sensitive=False)(job_id=stuck.pk, node_name="t-fleet-a")
    assert late is None
    after = await database_sync_to_async(quota_get)(tenant=pro)
    assert after.used == stuck.tokens and after.reserved == 0 and after.remaining == full - stuck.tokens


@pytest.mark.django_db
def test_job_past_its_deadline_marks_the_node_stuck_until_it_is_gone(make_tenant, django_capture_on_commit_callbacks):
    pro = make_tenant("pro")
    node = node_online("t-fleet-a")
    with django_capture_on_commit_callbacks():
        job = job_claim_as_worker(_job(pro))
    SynthesisJob.objects.filter(pk=job.pk).update(deadline_at=timezone.now() - timedelta(seconds=1))
    assert node_states_sweep() == [node.pk]
    node.refresh_from_db()
    assert node.state == NodeState.STUCK and "past their deadline" in node.state_reason
    SynthesisJob.objects.filter(pk=job.pk).update(status=JobStatus.FAILED)
    assert node_states_sweep() == [node.pk]
    node.refresh_from_db()
    assert node.state == NodeState.ONLINE and node.state_reason == ""


@pytest.mark.django_db
def test_queued_work_not_consumed_marks_the_node_stuck(make_tenant, django_capture_on_commit_callbacks):
    pro = make_tenant("pro")
    node = node_online("t-fleet-a")
    with django_capture_on_commit_callbacks():
        job = _job(pro)
    assert node_states_sweep() == []  # just queued: fine
    SynthesisJob.objects.filter(pk=job.pk).update(queued_at=timezone.now() - timedelta(minutes=2))
    assert node_states_sweep() == [node.pk]
    node.refresh_from_db()
    assert node.state == NodeState.STUCK and "not consumed" in node.state_reason
