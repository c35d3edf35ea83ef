from __future__ import annotations

from fleetagent.models import Node, NodeState
from fleetagent.selectors import node_pick_for_tenant
from fleetagent.services import node_create


def _online(name, *, tenant=None, running=0, queued=0, state=NodeState.ONLINE):
    node, _ = node_create(name=name, dedicated_tenant=tenant)
    Node.objects.filter(pk=node.pk).update(state=state, jobs_running=running, jobs_queued=queued)
    return node


def test_shared_tenant_gets_least_busy_online_shared_node(make_tenant):
    pro = make_tenant("pro")
    ent = make_tenant("enterprise")
    _online("busy", running=3)
    idle = _online("idle", running=0, queued=1)
    _online("drained", state=NodeState.DRAINING)
    _online("gone", state=NodeState.OFFLINE)
    _online("private", tenant=ent)
    assert node_pick_for_tenant(tenant=pro) == idle


def test_enterprise_tenant_only_gets_its_dedicated_nodes(make_tenant):
    ent = make_tenant("enterprise")
    other = make_tenant("enterprise")
    _online("shared")
    _online("theirs", tenant=other)
    assert node_pick_for_tenant(tenant=ent) is None
    mine = _online("mine", tenant=ent, running=5)
    assert node_pick_for_tenant(tenant=ent) == mine


def test_no_online_node_gives_none(make_tenant):
    _online("stuck", state=NodeState.STUCK)
    _online("restarting", state=NodeState.RESTARTING)
    assert node_pick_for_tenant(tenant=make_tenant("free")) is None
