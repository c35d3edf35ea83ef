"""Node snapshots pushed to every dashboard from outside the ASGI processes (Celery beat).

Connected to ``fleetagent.signals.nodes_changed`` in ``ConsoleConfig.ready``: the fleet's
beat task sends the signal, this publishes the snapshots to the HUBS group, and every ASGI
process's hub relays them to its dashboards ("origin" is none of theirs).
"""

from __future__ import annotations

import json
import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from console.consumers.groups import HUBS
from fleetagent.selectors import node_snapshot_list


def fleet_nodes_broadcast(*, node_ids: list[int]) -> None:
    """Push fresh snapshots of these nodes to every dashboard (call from sync code)."""
    text = json.dumps({"type": "nodes", "sent_at": time.time(), "nodes": node_snapshot_list(node_ids=node_ids)})
    async_to_sync(get_channel_layer().group_send)(HUBS, {"type": "fleet.relay", "text": text, "origin": "beat"})


def nodes_changed_receiver(sender, *, node_ids: list[int], **kwargs) -> None:
    fleet_nodes_broadcast(node_ids=node_ids)
