"""Fleet reads: which node takes a job, and what the dashboards and /metrics show."""

from __future__ import annotations

from django.db.models import F

from fleetagent.models import Node, NodeState


def node_pick_for_tenant(*, tenant) -> Node | None:
    """The online node that should run this tenant's next job, or None when none can.

    Enterprise tenants (plan with dedicated nodes) run only on their own dedicated nodes
    (private deployment); everyone else runs only on shared nodes. Among those, the least
    busy by the agent's last heartbeat (running + queued jobs), then by name for stability.
    Draining, stuck, restarting and offline nodes are never picked.
    """
    nodes = Node.objects.filter(state=NodeState.ONLINE)
    if tenant is not None and getattr(tenant.plan, "dedicated_nodes", False):
        nodes = nodes.filter(dedicated_tenant=tenant)
    else:
        nodes = nodes.filter(dedicated_tenant__isnull=True)
    return nodes.annotate(load=F("jobs_running") + F("jobs_queued")).order_by("load", "name").first()
