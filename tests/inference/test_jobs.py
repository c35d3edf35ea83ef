"""Synthesis job life cycle: reserve on accept, settle or release at the end, routing, requeue once."""

from __future__ import annotations

import datetime as dt
import re
import wave
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db.models import F
from django.utils import timezone

from billing.errors import FeatureNotInPlan, InsufficientQuota, RateLimited
from billing.metering import count_tokens
from billing.selectors import quota_get
from billing.services import limits, reservation_create
from console.errors import NotFound, VoxfleetError
from fleetagent.models import Node, NodeState
from fleetagent.services import node_create
from inference.models import JobStatus, SynthesisJob
from inference.services import (
    JobNotCancellable,
    NoNodeAvailable,
    job_cancel,
    job_create,
    job_execute,
    job_requeue_from_node,
    jobs_expire_overdue,
    voice_create,
    voice_delete,
)
from inference.tasks import synthesize
from tests.inference.speech_samples import encode, speech
from tests.support.fleet import agent_hello, node_online
from tests.support.jobs import job_claim_as_worker

pytestmark = pytest.mark.usefixtures("fleet_routing")


def _marked_offline(node):
    """What the heartbeat sweep does to a silent node, before it sends ``node_lost``.

    By hand on purpose: these tests call job_requeue_from_node (or job_create) themselves and
    check what it returns; the sweep would run the requeue first through the signal. The
    whole path (silent agent -> sweep -> requeue) runs in tests/fleetagent/test_restart_jobs.py.
    """
    Node.objects.filter(pk=node.pk).update(state=NodeState.OFFLINE)


def _create(tenant, *, text="你好，欢迎使用语音合成。", voice="zh-female", capture=None, **kwargs):
    if capture is None:
        return job_create(tenant=tenant, text=text, voice=voice, **kwargs)
    with capture(execute=True):
        job = job_create(tenant=tenant, text=text, voice=voice, **kwargs)
    job.refresh_from_db()
    return job


def test_job_lifecycle_reserves_on_accept_and_settles_on_success(
    make_tenant, django_capture_on_commit_callbacks, published
):
    pro = make_tenant("pro")
    node = node_online("t-shared-a")
    full = quota_get(tenant=pro).remaining

    job = _create(pro, capture=django_capture_on_commit_callbacks, seed=4242)

    tokens = count_tokens("你好,欢迎使用语音合成。")
    assert job.status == JobStatus.QUEUED
    assert job.node == node and job.tokens == tokens and job.seed == 4242
    assert published == [("node.t-shared-a", "inference.synthesize", [job.pk], {"node_name": "t-shared-a"})]
    held = quota_get(tenant=pro)
    assert held.reserved == tokens and held.remaining == full - tokens

    synthesize(job.pk, node_name="t-shared-a")  # what the node's worker runs

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert job.attempts == 1 and job.started_at and job.finished_at
    assert (
        job.gpu_seconds > 0
        and job.audio_seconds > 0.5
        and job.rtf == pytest.approx(job.gpu_seconds / job.audio_seconds, rel=1e-3)
    )
    assert job.engine_version.startswith("cpu-")
    path = Path(job.output_path)
    assert path.parent == Path(django_settings.OUTPUTS_DIR)
    assert re.fullmatch(rf"\d{{8}}-\d{{6}}-{job.pk}\.wav", path.name)
    with wave.open(str(path)) as wav:
        assert wav.getnframes() / wav.getframerate() == pytest.approx(job.audio_seconds, abs=0.01)
    settled = quota_get(tenant=pro)
    assert settled.reserved == 0 and settled.remaining == full - tokens and settled.used == tokens
    assert limits.job_slots_in_use(tenant=pro) == 0

    # A redelivered message (worker restart with acks_late) finds nothing to do and charges nothing.
    assert job_execute(job_id=job.pk, node_name="t-shared-a") is None
    assert quota_get(tenant=pro).used == tokens


def test_cancel_releases_tokens_and_a_late_worker_does_nothing(make_tenant, django_capture_on_commit_callbacks):
    pro = make_tenant("pro")
    node_online("t-shared-a")
    full = quota_get(tenant=pro).remaining
    job = _create(pro, capture=django_capture_on_commit_callbacks)
    assert quota_get(tenant=pro).reserved == job.tokens

    cancelled = job_cancel(job=job)

    assert cancelled.status == JobStatus.CANCELLED and cancelled.finished_at
    after = quota_get(tenant=pro)
    assert after.reserved == 0 and after.remaining == full and after.used == 0
    assert limits.job_slots_in_use(tenant=pro) == 0
    assert job_execute(job_id=job.pk, node_name="t-shared-a") is None
    assert quota_get(tenant=pro).used == 0
    with pytest.raises(JobNotCancellable) as refused:
        job_cancel(job=cancelled)
    assert refused.value.status == 409


def test_cancel_of_a_running_job_discards_its_result_uncharged(make_tenant, django_capture_on_commit_callbacks):
    pro = make_tenant("pro")
    node_online("t-shared-a")
    full = quota_get(tenant=pro).remaining
    job = job_claim_as_worker(_create(pro, capture=django_capture_on_commit_callbacks))
    job_cancel(job=job)
    # The engine cannot be interrupted; its finish must not settle a released reservation.
    assert job_execute(job_id=job.pk, node_name="t-shared-a") is None
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert quota_get(tenant=pro).remaining == full and quota_get(tenant=pro).used == 0


def test_failure_releases_tokens(make_tenant, django_capture_on_commit_callbacks):
    pro = make_tenant("pro")
    node_online("t-shared-a")
    prompt = speech(6.0, "zh-female")
    voice = voice_create(
        tenant=pro, name="Narrator", audio=encode(prompt.samples, prompt.sample_rate), transcript="今天天气很好"
    )
    full = quota_get(tenant=pro).remaining
    job = _create(pro, voice=voice.key, capture=django_capture_on_commit_callbacks)
    assert job.voice == voice
    voice_delete(voice=voice)  # the voice disappears while the job waits in the queue

    job_execute(job_id=job.pk, node_name="t-shared-a")

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.error_code == "voice_not_found"
    assert not job.output_path
    after = quota_get(tenant=pro)
    assert after.reserved == 0 and after.remaining == full and after.used == 0
    assert limits.job_slots_in_use(tenant=pro) == 0


def test_node_death_requeues_once_then_fails_and_never_charges(make_tenant, django_capture_on_commit_callbacks):
    pro = make_tenant("pro")
    first = node_online("t-shared-a")
    second, _token = node_create(name="t-shared-b")  # registered; its agent has not connected yet
    full = quota_get(tenant=pro).remaining
    job = job_claim_as_worker(_create(pro, capture=django_capture_on_commit_callbacks))
    assert job.node == first and job.status == JobStatus.RUNNING

    # Host A dies mid-job (the fleet marks it offline, then hands its jobs back); B comes up.
    _marked_offline(first)
    agent_hello(second)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = job_requeue_from_node(node_name="t-shared-a")
    job.refresh_from_db()
    assert outcome.requeued == [job.pk] and outcome.failed == [] and len(outcome) == 1
    assert job.status == JobStatus.QUEUED and job.node == second and job.requeues == 1
    assert quota_get(tenant=pro).reserved == job.tokens  # still held once, not twice

    # A's worker comes back and its redelivered message runs late: nothing happens.
    assert job_execute(job_id=job.pk, node_name="t-shared-a") is None

    # B dies too while running it: the second death fails the job and releases the tokens.
    job = job_claim_as_worker(job)
    _marked_offline(second)
    outcome = job_requeue_from_node(node_name="t-shared-b")
    job.refresh_from_db()
    assert outcome.failed == [job.pk] and outcome.requeued == []
    assert job.status == JobStatus.FAILED and job.error_code == "node_lost"
    after = quota_get(tenant=pro)
    assert after.remaining == full and after.reserved == 0 and after.used == 0


def test_requeued_job_that_succeeds_is_charged_exactly_once(make_tenant, django_capture_on_commit_callbacks):
    pro = make_tenant("pro")
    first = node_online("t-shared-a")
    full = quota_get(tenant=pro).remaining
    job = job_claim_as_worker(_create(pro, capture=django_capture_on_commit_callbacks))
    _marked_offline(first)
    node_online("t-shared-b")
    with django_capture_on_commit_callbacks(execute=True):
        job_requeue_from_node(node_name="t-shared-a")

    job_execute(job_id=job.pk, node_name="t-shared-b")
    job_execute(job_id=job.pk, node_name="t-shared-b")  # duplicate delivery
    job_execute(job_id=job.pk, node_name="t-shared-a")  # the dead host's late redelivery

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.node.name == "t-shared-b" and job.attempts == 2
    after = quota_get(tenant=pro)
    assert after.used == job.tokens and after.remaining == full - job.tokens and after.reserved == 0


def test_requeue_with_no_node_left_waits_for_one(make_tenant, django_capture_on_commit_callbacks):
    pro = make_tenant("pro")
    only = node_online("t-shared-a")
    full = quota_get(tenant=pro).remaining
    job = _create(pro, capture=django_capture_on_commit_callbacks)
    _marked_offline(only)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = job_requeue_from_node(node_name="t-shared-a")
    job.refresh_from_db()
    # It was still queued (never ran there), so moving it is not its one retry.
    assert outcome.requeued == [job.pk] and job.requeues == 0
    # It waits (tokens held) for a node, up to its deadline (tests/fleetagent/test_faults.py).
    assert job.status == JobStatus.ACCEPTED and job.node is None
    assert quota_get(tenant=pro).remaining == full - job.tokens


def test_enterprise_jobs_run_only_on_dedicated_nodes(make_tenant, django_capture_on_commit_callbacks, published):
    ent = make_tenant("enterprise")
    pro = make_tenant("pro")
    node_online("t-shared-a")
    dedicated = node_online("t-ent-a", tenant=ent)

    ent_job = _create(ent, capture=django_capture_on_commit_callbacks)
    pro_job = _create(pro, capture=django_capture_on_commit_callbacks)

    assert ent_job.node == dedicated and pro_job.node.name == "t-shared-a"
    assert [p[0] for p in published] == ["node.t-ent-a", "node.t-shared-a"]

    _marked_offline(dedicated)
    before = quota_get(tenant=ent)
    with pytest.raises(NoNodeAvailable) as refused:
        _create(ent)
    assert refused.value.status == 503
    assert quota_get(tenant=ent).reserved == before.reserved
    assert SynthesisJob.objects.filter(tenant=ent).count() == 1


def test_embedded_default_routes_every_tenant_to_the_local_node(make_tenant, settings):
    settings.EMBEDDED = True
    ent = make_tenant("enterprise")
    job = _create(ent)
    assert job.node.name == settings.EMBEDDED_NODE_NAME


@pytest.mark.parametrize(
    ("kwargs", "error", "status", "needle"),
    [
        ({"instruction": "用四川话说"}, FeatureNotInPlan, 403, "Dialect"),
        ({"instruction": "sadly"}, FeatureNotInPlan, 403, "Emotion"),
        ({"instruction": "说得慢一点"}, FeatureNotInPlan, 403, "Style"),
        ({"text": "Hello world"}, FeatureNotInPlan, 403, "'en'"),
        ({"voice": "nobody"}, NotFound, 404, "nobody"),
        ({"text": ""}, VoxfleetError, 400, "empty"),
        ({"text": "好" * 201}, VoxfleetError, 400, "too long"),
        ({"instruction": "慢" * 101}, VoxfleetError, 400, "too long"),
        ({"seed": 0}, VoxfleetError, 400, "Seed"),
        ({"seed": 100_000_001}, VoxfleetError, 400, "Seed"),
        ({"speed": 9}, VoxfleetError, 400, "Speed"),
    ],
)
def test_refusals_reserve_nothing(make_tenant, kwargs, error, status, needle):
    free = make_tenant("free")
    node_online("t-shared-a")
    with pytest.raises(error) as refused:
        _create(free, **kwargs)
    assert refused.value.status == status and needle in refused.value.message
    assert quota_get(tenant=free).reserved == 0 and quota_get(tenant=free).remaining == 500
    assert not SynthesisJob.objects.filter(tenant=free).exists()
    assert limits.job_slots_in_use(tenant=free) == 0


def test_insufficient_quota_is_429_and_leaves_nothing(make_tenant):
    free = make_tenant("free")
    node_online("t-shared-a")
    reservation_create(tenant=free, tokens=495)
    with pytest.raises(InsufficientQuota) as refused:
        _create(free, text="你好" * 5)
    assert refused.value.status == 429 and refused.value.code == "insufficient_quota"
    assert not SynthesisJob.objects.filter(tenant=free).exists()
    assert limits.job_slots_in_use(tenant=free) == 0
    assert quota_get(tenant=free).reserved == 495


def test_concurrent_job_slots_follow_the_plan(make_tenant, django_capture_on_commit_callbacks):
    free = make_tenant("free")  # one concurrent job
    node_online("t-shared-a")
    first = _create(free, capture=django_capture_on_commit_callbacks)
    with pytest.raises(RateLimited) as refused:
        _create(free)
    assert refused.value.status == 429 and refused.value.headers["Retry-After"]
    assert quota_get(tenant=free).reserved == first.tokens  # the refused one holds nothing
    job_execute(job_id=first.pk, node_name="t-shared-a")
    assert _create(free).status == JobStatus.QUEUED


def test_idempotency_key_returns_the_first_job_and_reserves_once(make_tenant):
    pro = make_tenant("pro")
    node_online("t-shared-a")
    one = _create(pro, idempotency_key="order-17")
    two = _create(pro, idempotency_key="order-17")
    other = make_tenant("pro")
    three = _create(other, idempotency_key="order-17")
    assert one.pk == two.pk != three.pk
    assert quota_get(tenant=pro).reserved == one.tokens


def test_seed_is_drawn_when_omitted_and_replays_byte_identically(make_tenant, django_capture_on_commit_callbacks):
    pro = make_tenant("pro")
    node_online("t-shared-a")
    drawn = _create(pro)
    assert 1 <= drawn.seed <= 100_000_000
    jobs = [
        _create(pro, capture=django_capture_on_commit_callbacks, text="Hello there, friend.", voice=v, seed=s)
        for v, s in (("en-female", 77), ("en-female", 77), ("en-female", 78))
    ]
    for job in jobs:
        job_execute(job_id=job.pk, node_name="t-shared-a")
        job.refresh_from_db()
        assert job.status == JobStatus.SUCCEEDED
    audio = [Path(job.output_path).read_bytes() for job in jobs]
    assert audio[0] == audio[1]
    assert audio[0] != audio[2]


def test_overdue_jobs_expire_and_release(make_tenant, django_capture_on_commit_callbacks):
    pro = make_tenant("pro")
    node_online("t-shared-a")
    full = quota_get(tenant=pro).remaining
    job = _create(pro, capture=django_capture_on_commit_callbacks)
    SynthesisJob.objects.filter(pk=job.pk).update(deadline_at=timezone.now() - dt.timedelta(seconds=1))
    assert jobs_expire_overdue() == [job.pk]
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.error_code == "job_timed_out"
    assert quota_get(tenant=pro).remaining == full


def test_billing_reconcile_checks_jobs_against_their_reservations(make_tenant, django_capture_on_commit_callbacks):
    from inference.reconcile import books_drift_find

    pro = make_tenant("pro")
    node_online("t-shared-a")
    done = _create(pro, capture=django_capture_on_commit_callbacks)
    job_execute(job_id=done.pk, node_name="t-shared-a")
    cancelled = _create(pro, text="第二句话。", capture=django_capture_on_commit_callbacks)
    job_cancel(job=cancelled)
    waiting = _create(pro, text="第三句话。", capture=django_capture_on_commit_callbacks)
    assert books_drift_find() == []

    # A cancelled job marked succeeded would be served without its tokens being consumed.
    SynthesisJob.objects.filter(pk=cancelled.pk).update(status=JobStatus.SUCCEEDED)
    # A job whose recorded charge differs from what its reservation holds.
    SynthesisJob.objects.filter(pk=waiting.pk).update(tokens=F("tokens") + 1)
    drift = books_drift_find()
    assert any(f"job {cancelled.pk}: succeeded but reservation" in line for line in drift), drift
    assert any(f"job {waiting.pk}: charged" in line for line in drift), drift
    assert len(drift) == 2
