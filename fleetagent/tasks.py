"""Celery beat tasks of the fleet (thin: each calls one service)."""

from __future__ import annotations

from celery import shared_task

from fleetagent.models import Node
from fleetagent.services import node_states_sweep, samples_downsample
from fleetagent.signals import nodes_changed


@shared_task(name="fleetagent.sweep", ignore_result=True)
def fleet_sweep() -> list[int]:
    changed = node_states_sweep()
    if changed:
        # Beat runs outside the ASGI processes: the console pushes these to the dashboards.
        nodes_changed.send(sender=Node, node_ids=changed)
    return changed


@shared_task(name="fleetagent.downsample", ignore_result=True)
def fleet_downsample() -> dict:
    return samples_downsample()
