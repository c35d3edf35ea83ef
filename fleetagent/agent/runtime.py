"""The ops runtime of the embedded local node, whose jobs run in this process through the database.

``NodeRuntime`` counts and moves the node's jobs in SQL through the jobs app's public selectors
and services (the agent is an entry point); drain/resume/restart themselves are
``fleetagent.agent.ops.OpsRuntime``'s. A GPU host, which holds no database, uses
``fleetagent.agent.host.HostRuntime`` instead.
"""

from __future__ import annotations

import logging

from channels.db import database_sync_to_async
from django.db import DatabaseError

from fleetagent.agent.ops import OpsRuntime
from fleetagent.protocol import JOB_FRAMES_FROM
from inference.listeners import jobs_held
from inference.selectors import job_counts_for_node, job_ids_running_on_node, job_outcomes
from inference.services import job_requeue_from_node

logger = logging.getLogger(__name__)


def jobs_requeue(*, node_name: str) -> int:
    """Hand the node's open jobs back to the jobs app (requeued once, else failed); how many."""
    return len(job_requeue_from_node(node_name=node_name))


class NodeRuntime(OpsRuntime):
    """Drain/resume/restart for a node whose jobs this process claims and settles in SQL."""

    # It claims in the database (protocol v2): no job frames.
    protocol_version = JOB_FRAMES_FROM - 1

    async def counts(self) -> tuple[int, int]:
        return await database_sync_to_async(job_counts_for_node)(node_name=self.node_name)

    async def sample_counts(self) -> tuple[int, int]:
        try:
            return await self.counts()
        except DatabaseError as exc:
            # A database hiccup must not silence the heartbeat: report the hardware anyway.
            logger.warning("job counts unavailable: %s", exc)
            return self.stats.jobs_running, self.stats.jobs_queued

    def jobs_held(self) -> list[int]:
        return jobs_held()

    async def _in_flight(self) -> list[int]:
        return await database_sync_to_async(job_ids_running_on_node)(node_name=self.node_name)

    async def _give_back(self) -> int:
        return await database_sync_to_async(jobs_requeue)(node_name=self.node_name)

    async def _outcomes(self, job_ids: list[int]) -> dict[int, str]:
        return await database_sync_to_async(job_outcomes)(job_ids=job_ids, node_name=self.node_name)
