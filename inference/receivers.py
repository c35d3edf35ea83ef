"""How the job side answers the fleet registry's signals (connected in ``InferenceConfig.ready``).

The fleet registry sits below the jobs app and never imports it: when a node is lost it
sends ``node_lost``, and when it sweeps for stuck nodes it asks ``node_work_query``.
"""

from __future__ import annotations

from inference.selectors import node_work_for_nodes
from inference.services import job_requeue_from_node


def node_lost_requeue_jobs(sender, *, node_name: str, **kwargs) -> None:
    """A dead node's open jobs are requeued once (or failed and released on a second death)."""
    job_requeue_from_node(node_name=node_name)


def node_work_report(sender, *, node_ids: list[int], now, **kwargs) -> dict:
    return node_work_for_nodes(node_ids=node_ids, now=now)
