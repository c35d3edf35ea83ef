"""One node's data is persisted apart from another's, and the console keeps a drained node drained."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import DatabaseError
from django.utils import timezone

from fleetagent import services
from fleetagent.models import GpuSample, Node, NodeAction, NodeState
from fleetagent.services import (
    node_action_acknowledge,
    node_action_request,
    node_agent_connect,
    node_create,
    node_states_sweep,
    samples_ingest,
)

pytestmark = pytest.mark.django_db


def _connected(name):
    node, _ = node_create(name=name)
    return node_agent_connect(node_id=node.pk, channel_name=f"chan-{name}", hello={"nvml": True, "gpus": [{}]})


def _sample(util=50.0, **node_stats):
    return {
        "ts": time.time(),
        "gpus": [{"index": 0, "utilization": util, "vram_used_mb": 1000.0, "vram_total_mb": 24000.0}],
        "node": {"jobs_running": 0, "jobs_queued": 0, **node_stats},
    }


def test_a_sample_that_cannot_be_stored_drops_only_its_own_node():
    good, bad = _connected("good"), _connected("bad")
    Node.objects.update(last_seen_at=timezone.now() - timedelta(seconds=8))
    # Unchecked data straight into the service (what the issue saw: every flush failed).
    samples_ingest(batch=[(bad.pk, {**_sample(), "ts": 1e20}), (good.pk, _sample(util=42.0))])
    good.refresh_from_db()
    assert good.last_seen_at > timezone.now() - timedelta(seconds=2)
    assert list(GpuSample.objects.values_list("node__name", "utilization")) == [("good", 42.0)]


def test_a_database_error_for_one_node_rolls_back_nobody_elses(monkeypatch):
    good, bad = _connected("good"), _connected("bad")
    real_insert = services._samples_insert

    def insert(rows):
        if any(row[0] == bad.pk for row in rows):
            raise DatabaseError("value out of range for this node's rows")
        real_insert(rows)

    monkeypatch.setattr(services, "_samples_insert", insert)
    Node.objects.update(last_seen_at=timezone.now() - timedelta(seconds=8))
    samples_ingest(batch=[(bad.pk, _sample(util=1.0)), (good.pk, _sample(util=42.0))])
    assert list(GpuSample.objects.values_list("node__name", "utilization")) == [("good", 42.0)]
    for node in (good, bad):
        node.refresh_from_db()
        assert node.last_seen_at > timezone.now() - timedelta(seconds=2)  # the heartbeat is apart


def test_job_figures_one_node_cannot_store_leave_everyone_elses_stored():
    good, bad, idle = _connected("good"), _connected("bad"), _connected("idle")
    # Unchecked figures straight into the service: past PostgreSQL's integer, so the one UPDATE
    # of every node's figures fails there and each node's figures are stored on their own.
    samples_ingest(
        batch=[
            (bad.pk, _sample(jobs_running=2**40)),
            (good.pk, _sample(jobs_running=3, jobs_queued=2, rtf_mean=0.25)),
            (idle.pk, _sample()),
        ]
    )
    good.refresh_from_db()
    idle.refresh_from_db()
    assert (good.jobs_running, good.jobs_queued, good.stats["rtf_mean"]) == (3, 2, 0.25)
    assert (idle.jobs_running, idle.stats) == (0, {"jobs_running": 0, "jobs_queued": 0})
    # The next flush changes only what changed.
    samples_ingest(batch=[(good.pk, _sample(jobs_running=1, jobs_queued=2, rtf_mean=0.25)), (idle.pk, _sample())])
    good.refresh_from_db()
    assert (good.jobs_running, good.jobs_queued) == (1, 2)


def test_drained_survives_going_offline_and_a_restarted_agent(staff_user, django_capture_on_commit_callbacks):
    node = _connected("gpu-a")
    with django_capture_on_commit_callbacks():
        drain = node_action_request(node=node, action="drain", user=staff_user)
    node_action_acknowledge(node_id=node.pk, command_id=drain.pk, ok=True, detail={})
    Node.objects.filter(pk=node.pk).update(last_seen_at=timezone.now() - timedelta(seconds=30))
    assert node_states_sweep() == [node.pk]
    node.refresh_from_db()
    assert node.state == NodeState.OFFLINE and node.drained
    # The heartbeat returns from an agent that restarted and says it is not draining.
    assert samples_ingest(batch=[(node.pk, _sample(draining=False))]) == [node.pk]
    node.refresh_from_db()
    assert node.state == NodeState.DRAINING and node.drained
    Node.objects.filter(pk=node.pk).update(state=NodeState.OFFLINE)
    node = node_agent_connect(node_id=node.pk, channel_name="new", hello={"draining": False, "v": 2})
    assert node.state == NodeState.DRAINING


def test_restart_and_stuck_recovery_keep_a_drained_node_drained(staff_user, django_capture_on_commit_callbacks):
    node = _connected("gpu-a")
    Node.objects.filter(pk=node.pk).update(drained=True, state=NodeState.DRAINING)
    with django_capture_on_commit_callbacks():
        restart = node_action_request(node=node, action="restart", user=staff_user)
    node_action_acknowledge(node_id=node.pk, command_id=restart.pk, ok=True, detail={})
    node.refresh_from_db()
    assert node.state == NodeState.DRAINING
    Node.objects.filter(pk=node.pk).update(state=NodeState.STUCK, state_reason="was stuck")
    node_states_sweep()
    node.refresh_from_db()
    assert node.state == NodeState.DRAINING


def test_resume_clears_the_desired_state(staff_user, django_capture_on_commit_callbacks):
    node = _connected("gpu-a")
    Node.objects.filter(pk=node.pk).update(drained=True, state=NodeState.DRAINING)
    with django_capture_on_commit_callbacks():
        resume = node_action_request(node=node, action="resume", user=staff_user)
    node.refresh_from_db()
    assert not node.drained
    node_action_acknowledge(node_id=node.pk, command_id=resume.pk, ok=True, detail={})
    node.refresh_from_db()
    assert node.state == NodeState.ONLINE
    assert NodeAction.objects.get().outcome == "succeeded"
