"""Celery beat tasks of the fleet (thin: each calls one service)."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from celery import shared_task
from channels.layers import get_channel_layer

from console.consumers.groups import HUBS
from fleetagent.services import node_states_sweep, samples_downsample


@shared_task(name="fleetagent.sweep", ignore_result=True)
def fleet_sweep() -> list[int]:
    changed = node_states_sweep()
    if changed:
        fleet_nodes_broadcast(node_ids=changed)
    return changed


@shared_task(name="fleetagent.downsample", ignore_result=True)
def fleet_downsample() -> dict:
    return samples_downsample()


def fleet_nodes_broadcast(*, node_ids: list[int]) -> None:
    """Push fresh node snapshots to every dashboard (from outside the ASGI process)."""
    from console.consumers.wire import dashboard_message, node_for_wire
    from fleetagent.selectors import node_snapshot_list

    text = dashboard_message("nodes", [node_for_wire(n) for n in node_snapshot_list(node_ids=node_ids)])
    # Every ASGI process's hub relays it to its dashboards ("origin" is none of theirs).
    async_to_sync(get_channel_layer().group_send)(HUBS, {"type": "fleet.relay", "text": text, "origin": "beat"})
