from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from console.errors import Conflict
from fleetagent.models import GpuSample, Node, NodeAction, NodeState
from fleetagent.services import (
    node_action_acknowledge,
    node_action_request,
    node_agent_connect,
    node_create,
    node_states_sweep,
    samples_downsample,
    samples_ingest,
)
from tests.support.fleet import node_online


def _connected(name="gpu-a", *, seen_s_ago=0.0):
    """A node whose agent connected and was last heard ``seen_s_ago`` seconds ago (the
    heartbeat's age is written by hand instead of waiting that long)."""
    node = node_online(name)
    Node.objects.filter(pk=node.pk).update(last_seen_at=timezone.now() - timedelta(seconds=seen_s_ago))
    node.refresh_from_db()
    return node


def _sample(ts, util=50.0, *, gpus=1):
    return {
        "ts": ts,
        "gpus": [
            {"index": i, "utilization": util, "vram_used_mb": 1000.0, "vram_total_mb": 24000.0} for i in range(gpus)
        ],
        "node": {"jobs_running": 0, "jobs_queued": 0},
    }


@pytest.mark.django_db
def test_hello_brings_an_offline_node_online_and_keeps_draining(django_capture_on_commit_callbacks):
    node, _ = node_create(name="gpu-a")
    assert node.state == NodeState.OFFLINE
    node = node_agent_connect(
        node_id=node.pk, channel_name="c1", hello={"nvml": True, "gpu_model": "L20", "gpus": [{}] * 2}
    )
    assert (node.state, node.gpu_model, node.gpu_count, node.nvml_available) == (NodeState.ONLINE, "L20", 2, True)
    with django_capture_on_commit_callbacks():  # the drain command to the agent is sent after commit
        node_action_request(node=node, action="drain")
    assert node_agent_connect(node_id=node.pk, channel_name="c2", hello={}).state == NodeState.DRAINING


@pytest.mark.django_db
def test_silent_node_goes_offline_after_the_heartbeat_timeout(settings):
    settings.NODE_OFFLINE_AFTER_S = 10
    quiet = _connected("quiet", seen_s_ago=11)
    lively = _connected("lively", seen_s_ago=2)
    changed = node_states_sweep()
    quiet.refresh_from_db()
    lively.refresh_from_db()
    assert changed == [quiet.pk]
    assert quiet.state == NodeState.OFFLINE and "no heartbeat for 10 s" in quiet.state_reason
    assert lively.state == NodeState.ONLINE
    assert node_states_sweep() == []  # idempotent


@pytest.mark.django_db
def test_heartbeat_after_offline_brings_node_back():
    node = _connected(seen_s_ago=60)
    node_states_sweep()
    changed = samples_ingest(batch=[(node.pk, _sample(time.time()))])
    node.refresh_from_db()
    assert changed == [node.pk] and node.state == NodeState.ONLINE


@pytest.mark.django_db
def test_restart_of_a_node_whose_agent_is_gone_is_refused_and_audited(staff_user):
    node = _connected(seen_s_ago=30)
    with pytest.raises(Conflict) as exc:
        node_action_request(node=node, action="restart", user=staff_user)
    assert exc.value.status == 409 and "agent is not connected" in exc.value.message
    record = NodeAction.objects.get()
    assert (record.outcome, record.action, record.requested_by) == ("refused", "restart", staff_user)
    node.refresh_from_db()
    assert node.state == NodeState.ONLINE  # refusing changed nothing


@pytest.mark.django_db
def test_a_second_action_waits_for_the_first(staff_user, django_capture_on_commit_callbacks):
    node = _connected()
    with django_capture_on_commit_callbacks():  # the channel-layer send happens after commit
        node_action_request(node=node, action="drain", user=staff_user)
    with pytest.raises(Conflict) as exc:
        node_action_request(node=node, action="restart", user=staff_user)
    assert exc.value.code == "action_pending"


@pytest.mark.django_db
def test_drain_then_resume_state_transitions(staff_user, django_capture_on_commit_callbacks):
    node = _connected()
    with django_capture_on_commit_callbacks():
        drain = node_action_request(node=node, action="drain", user=staff_user)
    node.refresh_from_db()
    assert node.state == NodeState.DRAINING  # out of dispatch before the ack
    node_action_acknowledge(node_id=node.pk, command_id=drain.pk, ok=True, detail={})
    with django_capture_on_commit_callbacks():
        resume = node_action_request(node=node, action="resume", user=staff_user)
    node.refresh_from_db()
    assert node.state == NodeState.DRAINING
    node_action_acknowledge(node_id=node.pk, command_id=resume.pk, ok=True, detail={})
    node.refresh_from_db()
    assert node.state == NodeState.ONLINE
    assert list(NodeAction.objects.values_list("outcome", flat=True)) == ["succeeded", "succeeded"]


@pytest.mark.django_db
def test_failed_restart_marks_node_stuck(staff_user, django_capture_on_commit_callbacks):
    node = _connected()
    with django_capture_on_commit_callbacks():
        record = node_action_request(node=node, action="restart", user=staff_user)
    node_action_acknowledge(node_id=node.pk, command_id=record.pk, ok=False, detail={}, error="CUDA OOM")
    node.refresh_from_db()
    record.refresh_from_db()
    assert node.state == NodeState.STUCK and "CUDA OOM" in node.state_reason
    assert record.outcome == "failed" and record.message == "CUDA OOM"


@pytest.mark.django_db
def test_downsampling_rolls_up_old_seconds_and_prunes_old_minutes():
    node = _connected()
    now = timezone.now().replace(second=30, microsecond=0)
    old_minute = (now - timedelta(hours=2)).replace(second=0)
    batch = [(node.pk, _sample((old_minute + timedelta(seconds=s)).timestamp(), util=float(s))) for s in range(60)]
    batch.append((node.pk, _sample((now - timedelta(seconds=5)).timestamp(), util=99.0)))
    samples_ingest(batch=batch)
    GpuSample.objects.create(node=node, gpu_index=0, at=now - timedelta(days=31), resolution_s=60, utilization=1.0)
    result = samples_downsample(now=now)
    assert result == {"rolled_up": 1, "raw_deleted": 60, "pruned": 1}
    rollup = GpuSample.objects.get(resolution_s=60)
    assert rollup.at == old_minute and rollup.utilization == pytest.approx(29.5)
    assert list(GpuSample.objects.filter(resolution_s=1).values_list("utilization", flat=True)) == [99.0]
    assert samples_downsample(now=now) == {"rolled_up": 0, "raw_deleted": 0, "pruned": 0}
