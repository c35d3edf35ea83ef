"""The services behind a v3 host's job frames (inference.services.hosts) and its leases.

The websocket end to end is tests/console/consumers/test_host_jobs.py; these pin the rules:
one UPDATE per renewal, leases reclaimed once and then failed, jobs with no lease left to the
heartbeat, reports on a job closed meanwhile never charged.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from billing.selectors import quota_get
from fleetagent import protocol
from fleetagent.models import Node
from inference.models import JobStatus, SynthesisJob
from inference.services import (
    NotYourJob,
    host_job_done,
    host_job_renew,
    host_job_start,
    job_cancel,
    job_create,
    job_output_path,
    job_requeue_unheld,
    jobs_reclaim_expired_leases,
)
from inference.streaming import JobAudioWriter
from tests.support.fleet import node_online
from tests.support.jobs import job_claim_as_worker

pytestmark = pytest.mark.usefixtures("fleet_routing")

PCM = b"\x01\x02" * 2400


@pytest.fixture
def host(db):
    node = node_online("t-v3-host")
    Node.objects.filter(pk=node.pk).update(protocol_version=protocol.JOB_FRAMES_FROM)
    node.refresh_from_db()
    return node


def _accept(tenant, capture, text="你好，欢迎使用语音合成。") -> SynthesisJob:
    with capture(execute=True):
        return job_create(tenant=tenant, text=text, voice="zh-female")


def _lease(job) -> dt.datetime:
    return SynthesisJob.objects.get(pk=job.pk).lease_expires_at


def _writer(job, pcm: bytes = PCM) -> JobAudioWriter:
    writer = JobAudioWriter(job_id=job.pk, output=job_output_path(job=job), sample_rate=24_000)
    writer.append(pcm)
    return writer


def test_a_renewal_is_one_update_for_all_the_jobs_a_host_holds(
    make_tenant, host, django_capture_on_commit_callbacks, django_assert_num_queries
):
    pro = make_tenant("pro")
    jobs = [_accept(pro, django_capture_on_commit_callbacks, text=f"第{n}句话。") for n in "一二三"]
    start = timezone.now()
    for job in jobs:
        assert host_job_start(node_id=host.pk, job_id=job.pk, attempt=1, now=start).ok

    later = start + dt.timedelta(seconds=protocol.LEASE_RENEW_S)
    with django_assert_num_queries(1):
        renewal = host_job_renew(node_id=host.pk, jobs=[[j.pk, 1] for j in jobs], now=later)

    assert renewal.closed == [] and renewal.not_yours == []
    assert {_lease(j) for j in jobs} == {later + dt.timedelta(seconds=protocol.LEASE_S)}


def test_a_renewal_names_what_ended_meanwhile_and_what_was_never_this_hosts(
    make_tenant, host, django_capture_on_commit_callbacks
):
    pro = make_tenant("pro")
    cancelled, stale = (_accept(pro, django_capture_on_commit_callbacks, text=t) for t in ("一句。", "二句。"))
    for job in (cancelled, stale):
        host_job_start(node_id=host.pk, job_id=job.pk, attempt=1)
    job_cancel(job=cancelled)

    renewal = host_job_renew(node_id=host.pk, jobs=[[cancelled.pk, 1], [stale.pk, 2]])

    assert renewal.closed == [(cancelled.pk, 1)]
    assert [(e.job_id, e.attempt, e.code) for e in renewal.not_yours] == [(stale.pk, 2, "not_your_job")]


def test_a_lease_is_reclaimed_once_then_the_job_fails_uncharged(make_tenant, host, django_capture_on_commit_callbacks):
    pro = make_tenant("pro")
    full = quota_get(tenant=pro).remaining
    job = _accept(pro, django_capture_on_commit_callbacks)
    start = timezone.now()
    host_job_start(node_id=host.pk, job_id=job.pk, attempt=1, now=start)

    assert jobs_reclaim_expired_leases(now=start + dt.timedelta(seconds=protocol.LEASE_S - 0.1)).requeued == []
    with django_capture_on_commit_callbacks(execute=True):
        first = jobs_reclaim_expired_leases(now=start + dt.timedelta(seconds=protocol.LEASE_S + 0.1))
    job.refresh_from_db()
    assert first.requeued == [job.pk] and job.status == JobStatus.QUEUED and job.lease_expires_at is None

    # Attempt 2 on the same host, and its lease runs out too: the second loss fails it.
    again = timezone.now()
    assert host_job_start(node_id=host.pk, job_id=job.pk, attempt=2, now=again).ok
    second = jobs_reclaim_expired_leases(now=again + dt.timedelta(seconds=protocol.LEASE_S + 0.1))
    job.refresh_from_db()
    assert second.failed == [job.pk] and job.status == JobStatus.FAILED and job.error_code == "node_lost"
    balance = quota_get(tenant=pro)
    assert balance.reserved == 0 and balance.remaining == full


def test_a_job_claimed_in_the_database_has_no_lease_and_is_left_to_the_heartbeat(
    make_tenant, host, django_capture_on_commit_callbacks
):
    pro = make_tenant("pro")
    job = job_claim_as_worker(_accept(pro, django_capture_on_commit_callbacks))
    assert job.lease_expires_at is None

    assert jobs_reclaim_expired_leases(now=timezone.now() + dt.timedelta(hours=1)).requeued == []
    assert SynthesisJob.objects.get(pk=job.pk).status == JobStatus.RUNNING


def test_a_claim_names_the_next_attempt_once(make_tenant, host, django_capture_on_commit_callbacks):
    pro = make_tenant("pro")
    job = _accept(pro, django_capture_on_commit_callbacks)
    past = _accept(pro, django_capture_on_commit_callbacks, text="第二句话。")

    with pytest.raises(NotYourJob):
        host_job_start(node_id=host.pk, job_id=job.pk, attempt=2)  # skips an attempt
    assert host_job_start(node_id=host.pk, job_id=job.pk, attempt=1).ok
    # A second message for the same attempt (republished) does not start a second run.
    assert host_job_start(node_id=host.pk, job_id=job.pk, attempt=1).reason == "already_running"
    other = node_online("t-v3-other")
    with pytest.raises(NotYourJob):
        host_job_start(node_id=other.pk, job_id=job.pk, attempt=1)
    late = past.deadline_at + dt.timedelta(seconds=1)
    assert host_job_start(node_id=host.pk, job_id=past.pk, attempt=1, now=late).reason == "past_deadline"


def test_a_job_cancelled_while_the_host_ran_it_is_not_charged_for_its_audio(
    make_tenant, host, django_capture_on_commit_callbacks
):
    pro = make_tenant("pro")
    full = quota_get(tenant=pro).remaining
    job = _accept(pro, django_capture_on_commit_callbacks)
    host_job_start(node_id=host.pk, job_id=job.pk, attempt=1)
    writer = _writer(job)
    job_cancel(job=job)

    status = host_job_done(
        node_id=host.pk,
        job_id=job.pk,
        attempt=1,
        writer=writer,
        audio_bytes=len(PCM),
        gpu_seconds=0.2,
        audio_seconds=0.1,
        engine_version="cosyvoice3-1.1",
    )

    assert status == "refused"
    assert SynthesisJob.objects.get(pk=job.pk).status == JobStatus.CANCELLED
    assert quota_get(tenant=pro).remaining == full and quota_get(tenant=pro).reserved == 0


def test_a_v3_hello_keeps_only_the_jobs_held_in_their_current_attempt(
    make_tenant, host, django_capture_on_commit_callbacks
):
    pro = make_tenant("pro")
    held, other_attempt, not_held = (
        _accept(pro, django_capture_on_commit_callbacks, text=t) for t in ("一句。", "二句。", "三句。")
    )
    for job in (held, other_attempt, not_held):
        host_job_start(node_id=host.pk, job_id=job.pk, attempt=1)

    outcome = job_requeue_unheld(
        node_name=host.name, held=[(held.pk, 1), (other_attempt.pk, 2)], now=timezone.now() + dt.timedelta(seconds=1)
    )

    assert sorted(outcome.requeued) == sorted([other_attempt.pk, not_held.pk])
    assert SynthesisJob.objects.get(pk=held.pk).status == JobStatus.RUNNING
