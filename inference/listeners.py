"""Job listeners: what an entry point registers to hear each job this process finishes.

The fleet agent (``python -m fleetagent`` on a GPU host, or the embedded local agent)
registers ``JobStats.job_finished`` to stream success rate, latency and RTF. Listeners are
called as ``cb(job_id, outcome, duration_s, rtf)`` in the process that ran the job, where
``outcome`` is ``succeeded``, ``failed`` or ``discarded`` (finished after the job was closed
elsewhere).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

JobListener = Callable[[int, str, float, "float | None"], None]
job_listeners: list[JobListener] = []


def add_job_listener(callback: JobListener) -> None:
    if callback not in job_listeners:
        job_listeners.append(callback)


def remove_job_listener(callback: JobListener) -> None:
    if callback in job_listeners:
        job_listeners.remove(callback)


def job_listeners_notify(*, job_id: int, outcome: str, duration_s: float, rtf: float | None) -> None:
    # A broken listener (a dashboard hiccup) must never fail or re-run a billed job.
    for callback in list(job_listeners):
        try:
            callback(job_id, outcome, duration_s, rtf)
        except Exception:  # noqa: BLE001
            logger.exception("job listener %r failed", callback)
