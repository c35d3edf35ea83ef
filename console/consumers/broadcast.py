"""Node snapshots pushed to every dashboard from outside the ASGI processes (Celery beat).

Connected to ``fleetagent.signals.nodes_changed`` in ``ConsoleConfig.ready``: the fleet's
beat task sends the signal, this publishes the snapshots to the HUBS group, and every ASGI
process's hub relays them to its dashboards ("origin" is none of theirs).
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from console.consumers.groups import HUBS
from console.consumers.wire import dashboard_message, node_for_wire
from fleetagent.selectors import node_snapshot_list


def fleet_nodes_broadcast(*, node_ids: list[int]) -> None:
    """Push fresh snapshots of these nodes to every dashboard (call from sync code)."""
    text = dashboard_message("nodes", [node_for_wire(n) for n in node_snapshot_list(node_ids=node_ids)])
    async_to_sync(get_channel_layer().group_send)(HUBS, {"type": "fleet.relay", "text": text, "origin": "beat"})


def nodes_changed_receiver(sender, *, node_ids: list[int], **kwargs) -> None:
    fleet_nodes_broadcast(node_ids=node_ids)
