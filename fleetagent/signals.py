"""What the fleet registry tells (and asks) the apps above it, without importing them.

The fleet registry sits below the job side: it knows nodes, not jobs. Where a fleet event
needs the jobs app (a lost node's jobs are requeued) or the console (dashboards see a state
change made by beat), it sends one of these signals; the higher app connects a receiver in
its ``AppConfig.ready``. With no receiver connected (a fleet without the jobs app) each is
a no-op.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.dispatch import Signal

# A node went offline (no heartbeat for NODE_OFFLINE_AFTER_S); sent once, after its state is
# saved, so it is not picked again. Arguments: node_id, node_name. Receivers move its open
# jobs elsewhere (inference requeues each once).
node_lost = Signal()

# Asked, not announced: the heartbeat sweep sends it with node_ids and now, and each
# receiver returns {node_id: NodeWork} for the nodes it knows work of. The sweep turns the
# answers into the stuck state (fleetagent.services.node_states_sweep).
node_work_query = Signal()

# Node states changed outside the ASGI processes (Celery beat's sweep). Argument: node_ids.
# The console pushes fresh snapshots of these nodes to every dashboard.
nodes_changed = Signal()


@dataclass(frozen=True)
class NodeWork:
    """What the jobs app reports about one node's work for the stuck check."""

    # Jobs running on the node past their deadline.
    running_overdue: int = 0
    # When the longest-waiting job queued for the node was queued (None: nothing queued).
    oldest_queued_at: dt.datetime | None = None

    def merged(self, other: NodeWork) -> NodeWork:
        stamps = [s for s in (self.oldest_queued_at, other.oldest_queued_at) if s is not None]
        return NodeWork(
            running_overdue=self.running_overdue + other.running_overdue,
            oldest_queued_at=min(stamps) if stamps else None,
        )
