"""The node's task when the database fails: retried on its queue, never acked away."""

from __future__ import annotations

import pytest
from celery.exceptions import Retry
from django.db import OperationalError

from inference import tasks


def test_a_claim_that_hit_a_database_fault_is_retried(monkeypatch):
    calls = []

    def claim_fails(*, job_id, node_name):
        calls.append((job_id, node_name))
        raise OperationalError("terminating connection due to administrator command")

    retried = {}

    def retry(*, exc, countdown):
        retried.update(exc=exc, countdown=countdown)
        return Retry(exc=exc, when=countdown)

    monkeypatch.setattr(tasks, "job_execute", claim_fails)
    monkeypatch.setattr(tasks.synthesize, "retry", retry)
    with pytest.raises(Retry):
        tasks.synthesize.run(7, node_name="gpu-a")
    assert calls == [(7, "gpu-a")]
    assert isinstance(retried["exc"], OperationalError) and 1 <= retried["countdown"] <= 5


def test_other_errors_are_not_retried(monkeypatch):
    def crash(*, job_id, node_name):
        raise ValueError("not a fault")

    monkeypatch.setattr(tasks, "job_execute", crash)
    with pytest.raises(ValueError):
        tasks.synthesize.run(7, node_name="gpu-a")


@pytest.mark.django_db
def test_a_database_blip_while_a_job_closes_is_waited_out_and_the_job_charged_once(
    make_tenant, settings, tmp_path, monkeypatch, django_capture_on_commit_callbacks
):
    from billing.selectors import quota_get
    from billing.services import limits
    from fleetagent.models import Node, NodeState
    from fleetagent.services import node_create
    from inference.models import JobStatus
    from inference.services import dispatch, job_create, job_execute

    settings.EMBEDDED = False
    settings.OUTPUTS_DIR = tmp_path / "outputs"
    limits.limits_reset_for_tests()
    node, _ = node_create(name="t-blip-a")
    Node.objects.filter(pk=node.pk).update(state=NodeState.ONLINE)
    pro = make_tenant("pro")
    with django_capture_on_commit_callbacks():
        job = job_create(tenant=pro, text="你好，欢迎使用语音合成。", voice="zh-female")
    real_settle = dispatch.reservation_settle
    faults = {"settle": 1}

    def settle_once_failing(**kwargs):
        if faults["settle"]:
            faults["settle"] -= 1
            raise OperationalError("terminating connection due to administrator command")
        return real_settle(**kwargs)

    monkeypatch.setattr(dispatch, "reservation_settle", settle_once_failing)
    job_execute(job_id=job.pk, node_name="t-blip-a")
    job.refresh_from_db()
    assert faults["settle"] == 0
    assert job.status == JobStatus.SUCCEEDED  # not "failed: terminating connection"
    assert quota_get(tenant=pro).used == job.tokens and quota_get(tenant=pro).reserved == 0


def test_a_database_fault_between_sentences_is_not_a_closed_job(monkeypatch):
    from inference.services import dispatch

    class Broken:
        def filter(self, **kwargs):
            raise OperationalError("the connection is lost")

    monkeypatch.setattr(dispatch.SynthesisJob, "objects", Broken())
    assert dispatch._still_mine(job_id=1, mine={}) is True


@pytest.mark.django_db
def test_a_claim_whose_connection_died_after_commit_is_still_this_attempt_s(
    make_tenant, settings, tmp_path, monkeypatch, django_capture_on_commit_callbacks
):
    from billing.services import limits
    from fleetagent.models import Node, NodeState
    from fleetagent.services import node_create
    from inference.models import JobStatus
    from inference.services import dispatch, job_create, job_execute

    settings.EMBEDDED = False
    settings.OUTPUTS_DIR = tmp_path / "outputs"
    limits.limits_reset_for_tests()
    node, _ = node_create(name="t-blip-b")
    Node.objects.filter(pk=node.pk).update(state=NodeState.ONLINE)
    with django_capture_on_commit_callbacks():
        job = job_create(tenant=make_tenant("pro"), text="你好，欢迎使用语音合成。", voice="zh-female")
    real_update = dispatch.SynthesisJob.objects.filter(pk=job.pk).update.__func__
    calls = {"n": 0}

    def update_then_lose_connection(self, **fields):
        changed = real_update(self, **fields)
        calls["n"] += 1
        if calls["n"] == 1 and fields.get("status") == JobStatus.RUNNING:
            raise OperationalError("terminating connection due to administrator command")  # after it committed
        return changed

    monkeypatch.setattr(type(dispatch.SynthesisJob.objects.filter(pk=job.pk)), "update", update_then_lose_connection)
    job_execute(job_id=job.pk, node_name="t-blip-b")
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.attempts == 1
