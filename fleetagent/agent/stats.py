"""Per-node job statistics from the outcomes the agent sees (an ``inference.listeners`` job listener)."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from fleetagent.protocol import JOB_RTF_BUCKETS, JOB_SECONDS_BUCKETS

SUCCEEDED = "succeeded"  # inference.choices.JobStatus.SUCCEEDED (not imported: a GPU host has no Django)
# Outcome names as /metrics labels: anything else is counted as "other".
_OUTCOME_NAMES = frozenset({"succeeded", "failed", "cancelled", "expired", "requeued"})

WINDOW_SHORT_S = 5 * 60
WINDOW_LONG_S = 60 * 60
# A busy node finishing a job every 100 ms for an hour is 36,000 outcomes; cap memory anyway.
MAX_OUTCOMES = 50_000


@dataclass(frozen=True)
class JobOutcome:
    at: float
    job_id: int
    succeeded: bool
    duration_s: float
    rtf: float | None


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    # Nearest-rank on the sorted sample: simple and exact for the small windows we keep.
    rank = max(0, min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1))))
    return round(sorted_values[rank], 3)


class _Histogram:
    """Cumulative counts per bucket edge (Prometheus's shape), since the agent started."""

    def __init__(self, edges: tuple[float, ...]) -> None:
        self.edges = edges
        self.counts = [0] * len(edges)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.sum += value
        self.count += 1
        for i, edge in enumerate(self.edges):
            if value <= edge:
                self.counts[i] += 1

    def as_dict(self) -> dict:
        return {"buckets": list(self.counts), "sum": round(self.sum, 3), "count": self.count}


class JobStats:
    """Running/queued counts and a rolling hour of job outcomes; safe to call from any thread."""

    def __init__(self, *, clock=time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._outcomes: deque[JobOutcome] = deque(maxlen=MAX_OUTCOMES)
        self._running: set[int] = set()
        self.jobs_queued = 0
        self._totals: dict[str, int] = {}
        self._seconds = _Histogram(JOB_SECONDS_BUCKETS)
        self._rtf = _Histogram(JOB_RTF_BUCKETS)

    def job_started(self, job_id: int) -> None:
        with self._lock:
            self._running.add(job_id)

    def job_finished(self, job_id: int, outcome: str, duration_s: float, rtf: float | None = None) -> None:
        """The ``inference.listeners`` signature: (job_id, outcome, duration_s, rtf)."""
        with self._lock:
            self._running.discard(job_id)
            key = outcome if outcome in _OUTCOME_NAMES else "other"
            self._totals[key] = self._totals.get(key, 0) + 1
            if outcome == SUCCEEDED:
                self._seconds.observe(float(duration_s or 0.0))
                if rtf is not None:
                    self._rtf.observe(float(rtf))
            self._outcomes.append(
                JobOutcome(
                    at=self._clock(),
                    job_id=int(job_id),
                    succeeded=outcome == SUCCEEDED,
                    duration_s=float(duration_s or 0.0),
                    rtf=float(rtf) if rtf is not None else None,
                )
            )

    @property
    def jobs_running(self) -> int:
        with self._lock:
            return len(self._running)

    def snapshot(self, *, running: int | None = None, queued: int | None = None, draining: bool = False) -> dict:
        now = self._clock()
        with self._lock:
            while self._outcomes and self._outcomes[0].at < now - WINDOW_LONG_S:
                self._outcomes.popleft()
            hour = list(self._outcomes)
            own_running = len(self._running)
            totals, seconds, rtf_hist = dict(self._totals), self._seconds.as_dict(), self._rtf.as_dict()
        five = [o for o in hour if o.at >= now - WINDOW_SHORT_S]
        ok_durations = sorted(o.duration_s for o in five if o.succeeded)
        rtfs = [o.rtf for o in five if o.succeeded and o.rtf is not None]
        return {
            "jobs_running": own_running if running is None else running,
            "jobs_queued": self.jobs_queued if queued is None else queued,
            "success_rate_5m": round(sum(o.succeeded for o in five) / len(five), 4) if five else None,
            "success_rate_1h": round(sum(o.succeeded for o in hour) / len(hour), 4) if hour else None,
            "jobs_5m": len(five),
            "jobs_1h": len(hour),
            "latency_p50_s": _percentile(ok_durations, 0.50),
            "latency_p95_s": _percentile(ok_durations, 0.95),
            "rtf_mean": round(sum(rtfs) / len(rtfs), 4) if rtfs else None,
            "draining": draining,
            "jobs_total": totals,
            "job_seconds": seconds,
            "job_rtf": rtf_hist,
        }
