"""Reads for the ops pages at fleet size."""

from __future__ import annotations

from django.db.models import Count, Sum

from fleetagent.choices import NodeState
from fleetagent.models import Node


def fleet_summary() -> dict:
    """Nodes by state and GPUs registered, from the node table alone (the page's first line)."""
    by_state = dict(Node.objects.values_list("state").annotate(n=Count("pk")).order_by())
    totals = Node.objects.aggregate(gpus=Sum("gpu_count"), running=Sum("jobs_running"), queued=Sum("jobs_queued"))
    return {
        "nodes": " · ".join(f"{by_state[s]} {s}" for s in NodeState.values if by_state.get(s)) or "no nodes",
        "gpus": f"{totals['gpus'] or 0:,}",
        "jobs": f"{totals['running'] or 0} running, {totals['queued'] or 0} queued",
    }


def fleet_state_alerts(*, limit: int = 30) -> list[dict]:
    """Offline and stuck nodes (newest heartbeat first), in fleet_alerts' shape, without GPU readings."""
    nodes = Node.objects.filter(state__in=(NodeState.OFFLINE, NodeState.STUCK)).order_by("-last_seen_at", "name")
    return [
        {"node": n.name, "kind": n.state, "message": n.state_reason or n.state}
        for n in nodes.only("name", "state", "state_reason", "last_seen_at")[:limit]
    ]
