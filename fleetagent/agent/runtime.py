"""What the agent does for ops commands, and the job counts it reports.

``NodeRuntime`` is the in-process side shared by the embedded local node and a GPU host:
drain (take no new jobs), resume, restart (drain, let in-flight jobs finish or requeue them,
clear engine caches + ``torch.cuda.empty_cache()`` and reload through the engine layer's
``inference.engines.engine_clear_and_reload``, resume). ``CeleryNodeRuntime`` additionally
stops and restarts consumption of the node's Celery queue through worker remote control.

The agent is an entry point: it reads and moves jobs only through the jobs app's public
selectors and services.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from channels.db import database_sync_to_async

from inference.engines import engine_clear_and_reload
from inference.selectors import job_counts_for_node
from inference.services import job_requeue_from_node

if TYPE_CHECKING:
    from fleetagent.agent.stats import JobStats

logger = logging.getLogger(__name__)

# How long a restart waits for in-flight jobs to finish before handing them back to the
# jobs app to requeue (they have their own deadlines; this bounds the restart itself).
RESTART_DRAIN_TIMEOUT_S = 120.0


def engine_restart_detail() -> dict:
    """Reload the engine (caches, empty_cache, load again) and report it for the restart's ack.

    VRAM in MB is torch's reserved memory on CUDA (what empty_cache gives back); None without CUDA.
    """
    result = engine_clear_and_reload()
    before, after = result.get("vram_before") or {}, result.get("vram_after") or {}
    engine = result.get("engine")
    return {
        "vram_before_mb": _mb(before.get("reserved")),
        "vram_after_mb": _mb(after.get("reserved")),
        "vram_allocated_before_mb": _mb(before.get("allocated")),
        "vram_allocated_after_mb": _mb(after.get("allocated")),
        "reload_s": result.get("reload_s"),
        "engine": engine if isinstance(engine, str | dict) else str(engine),
        "engine_reloaded": True,
    }


def _mb(value) -> float | None:
    return None if value is None else round(value / (1024 * 1024), 1)


def jobs_requeue(*, node_name: str) -> int:
    """Hand the node's open jobs back to the jobs app (requeued once, else failed); how many."""
    return len(job_requeue_from_node(node_name=node_name))


class NodeRuntime:
    """Drain/resume/restart for a node whose jobs run in this process."""

    def __init__(self, *, node_name: str, stats: JobStats, drain_timeout_s: float = RESTART_DRAIN_TIMEOUT_S) -> None:
        self.node_name = node_name
        self.stats = stats
        self.draining = False
        self.drain_timeout_s = drain_timeout_s
        # While a restart waits for in-flight jobs: how many it is waiting for (else None).
        self.restart_waiting_for: int | None = None
        self._lock = asyncio.Lock()

    async def counts(self) -> tuple[int, int]:
        return await database_sync_to_async(job_counts_for_node)(node_name=self.node_name)

    # Hooks for the Celery worker (no-ops in embedded mode, where dispatch already skips
    # a draining node because node_pick_for_tenant only picks online nodes).
    async def _consume_stop(self) -> None:
        return None

    async def _consume_start(self) -> None:
        return None

    async def drain(self) -> dict:
        self.draining = True
        await self._consume_stop()
        running, queued = await self.counts()
        return {"jobs_running": running, "jobs_queued": queued}

    async def resume(self) -> dict:
        self.draining = False
        await self._consume_start()
        return {}

    async def restart(self) -> dict:
        async with self._lock:
            started = time.monotonic()
            was_draining = self.draining
            await self.drain()
            running_at_start, _ = await self.counts()
            deadline = started + self.drain_timeout_s
            running = running_at_start
            self.restart_waiting_for = running
            while running and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                running, _ = await self.counts()
                self.restart_waiting_for = running
            self.restart_waiting_for = None
            requeued = 0
            if running:
                requeued = await database_sync_to_async(jobs_requeue)(node_name=self.node_name)
            reload = await asyncio.to_thread(engine_restart_detail)
            if not was_draining:
                await self.resume()
            return {
                **reload,
                "jobs_finished": running_at_start - running,
                "jobs_requeued": requeued,
                "duration_s": round(time.monotonic() - started, 2),
            }

    async def run_action(self, action: str) -> dict:
        return await getattr(self, action)()


class CeleryNodeRuntime(NodeRuntime):
    """The node's Celery worker lives in this process; drain stops consuming its queue."""

    def __init__(self, *, app, worker_hostname: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.app = app
        self.worker_hostname = worker_hostname

    @property
    def queue(self) -> str:
        return f"node.{self.node_name}"

    async def _consume_stop(self) -> None:
        await asyncio.to_thread(
            self.app.control.cancel_consumer, self.queue, destination=[self.worker_hostname], reply=True, timeout=5
        )

    async def _consume_start(self) -> None:
        await asyncio.to_thread(
            self.app.control.add_consumer, self.queue, destination=[self.worker_hostname], reply=True, timeout=5
        )
