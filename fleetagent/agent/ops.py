"""What the agent does for ops commands: drain, resume, restart (no database here).

``OpsRuntime`` is the part shared by the embedded local node (``fleetagent.agent.runtime``,
whose jobs are counted in SQL) and a GPU host (``fleetagent.agent.host``, which counts the jobs
it holds): drain (take no new jobs), resume, restart (drain, wait a bounded time for the jobs in
flight, hand back what is still running, clear engine caches + ``torch.cuda.empty_cache()`` and
reload through ``inference.engines.engine_clear_and_reload``, resume). The ack of a restart says
what really happened to each job that was in flight when it began.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from fleetagent.protocol import PROTOCOL_VERSION
from inference.engines import engine_clear_and_reload

if TYPE_CHECKING:
    from fleetagent.agent.stats import JobStats

logger = logging.getLogger(__name__)

# How long a restart waits for in-flight jobs to finish before handing them back (they have
# their own deadlines; this bounds the restart itself).
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


class OpsRuntime:
    """Drain/resume/restart for a node whose jobs run in this process.

    Subclasses say how many jobs run (``counts``), which ones (``_in_flight``), how the ones a
    restart stops waiting for are handed back (``_give_back``) and how each ended (``_outcomes``).
    """

    # The protocol version this runtime's agent speaks (its jobs decide: v3 runs them without SQL).
    protocol_version = PROTOCOL_VERSION

    def __init__(
        self,
        *,
        node_name: str,
        stats: JobStats,
        drain_timeout_s: float = RESTART_DRAIN_TIMEOUT_S,
        runs_jobs: bool = True,
    ) -> None:
        self.node_name = node_name
        # Whether the node's jobs run in this process (its hello then names the ones it holds).
        self.runs_jobs = runs_jobs
        self.stats = stats
        self.draining = False
        self.drain_timeout_s = drain_timeout_s
        # While a restart waits for in-flight jobs: how many it is waiting for (else None).
        self.restart_waiting_for: int | None = None
        self._lock = asyncio.Lock()

    async def counts(self) -> tuple[int, int]:
        """(running, queued) jobs of this node."""
        raise NotImplementedError

    async def sample_counts(self) -> tuple[int, int]:
        """What a sample reports (a runtime may fall back to its last figures on a fault)."""
        return await self.counts()

    def jobs_held(self) -> list:
        """What a hello names as the jobs this process still runs (protocol version's shape)."""
        return []

    def job_leases(self) -> list:
        """[[job_id, attempt], …] to renew (v3: jobs run without the database); none by default."""
        return []

    def job_ended_elsewhere(self, job_id, attempt, *, outcome: str) -> None:
        """The console says this job is not (any more) this node's to run: it stops here."""
        logger.warning("the console ended job %s (attempt %s) here: %s", job_id, attempt, outcome)

    def link_lost(self) -> None:
        """The console connection dropped (the jobs this process runs over it stop)."""
        return None

    async def _in_flight(self) -> list[int]:
        raise NotImplementedError

    async def _give_back(self) -> int:
        """The jobs still running once a restart stopped waiting: handed back; how many."""
        raise NotImplementedError

    async def _outcomes(self, job_ids: list[int]) -> dict[int, str]:
        raise NotImplementedError

    # Hooks for a Celery worker in this process (no-ops where there is none).
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
            in_flight = await self._in_flight()
            deadline = started + self.drain_timeout_s
            running, _ = await self.counts()
            self.restart_waiting_for = running
            while running and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                running, _ = await self.counts()
                self.restart_waiting_for = running
            self.restart_waiting_for = None
            given_back = await self._give_back() if running else 0
            # What really happened to each in-flight job (a failed one did not "finish").
            outcomes = await self._outcomes(in_flight)
            reload = await asyncio.to_thread(engine_restart_detail)
            if not was_draining:
                await self.resume()
            values = list(outcomes.values())
            return {
                **reload,
                "jobs_finished": values.count("succeeded"),
                "jobs_failed": values.count("failed") + values.count("cancelled"),
                "jobs_requeued": max(given_back, values.count("requeued")),
                "jobs": {str(job_id): outcome for job_id, outcome in outcomes.items()},
                "duration_s": round(time.monotonic() - started, 2),
            }

    async def run_action(self, action: str) -> dict:
        return await getattr(self, action)()
