from __future__ import annotations

import time

from fleetagent.models import NodeState
from fleetagent.selectors import node_pick_for_tenant
from fleetagent.services import node_action_acknowledge, node_action_request, node_create, samples_ingest
from tests.support.fleet import node_online


def _node(name, *, tenant=None, running=0, queued=0, state=NodeState.ONLINE):
    """A node brought into ``state`` the way production gets it there: registered (offline),
    its agent's hello and a heartbeat reporting ``running``/``queued`` jobs (online), then an ops
    action: drain (draining), restart (restarting), a restart the agent reports failed (stuck)."""
    if state == NodeState.OFFLINE:
        node, _token = node_create(name=name, dedicated_tenant=tenant)  # its agent never connected
    else:
        node = node_online(name, tenant=tenant)
        heartbeat = {"ts": time.time(), "node": {"jobs_running": running, "jobs_queued": queued}}
        samples_ingest(batch=[(node.pk, heartbeat)])
    if state == NodeState.DRAINING:
        node_action_request(node=node, action="drain")
    elif state in (NodeState.RESTARTING, NodeState.STUCK):
        record = node_action_request(node=node, action="restart")
        if state == NodeState.STUCK:
            node_action_acknowledge(node_id=node.pk, command_id=record.pk, ok=False, detail={}, error="CUDA OOM")
    node.refresh_from_db()
    assert (node.state, node.jobs_running, node.jobs_queued) == (state, running, queued)  # the setup held
    return node


def test_shared_tenant_gets_least_busy_online_shared_node(make_tenant):
    pro = make_tenant("pro")
    ent = make_tenant("enterprise")
    _node("busy", running=3)
    idle = _node("idle", running=0, queued=1)
    _node("drained", state=NodeState.DRAINING)
    _node("gone", state=NodeState.OFFLINE)
    _node("private", tenant=ent)
    assert node_pick_for_tenant(tenant=pro) == idle


def test_enterprise_tenant_only_gets_its_dedicated_nodes(make_tenant):
    ent = make_tenant("enterprise")
    other = make_tenant("enterprise")
    _node("shared")
    _node("theirs", tenant=other)
    assert node_pick_for_tenant(tenant=ent) is None
    mine = _node("mine", tenant=ent, running=5)
    assert node_pick_for_tenant(tenant=ent) == mine


def test_no_online_node_gives_none(make_tenant):
    _node("stuck", state=NodeState.STUCK)
    _node("restarting", state=NodeState.RESTARTING)
    assert node_pick_for_tenant(tenant=make_tenant("free")) is None
