from __future__ import annotations

from fleetagent.agent.stats import JobStats


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


def test_success_rates_latency_and_rtf_over_windows():
    clock = Clock()
    stats = JobStats(clock=clock)
    # 50 minutes ago: two failures (inside 1 h, outside 5 min).
    clock.now -= 50 * 60
    stats.job_finished(1, "failed", 0.5)
    stats.job_finished(2, "failed", 0.5)
    clock.now += 50 * 60
    for i, duration in enumerate([1.0, 2.0, 3.0, 4.0, 10.0]):
        stats.job_finished(10 + i, "succeeded", duration, 0.2)
    stats.job_finished(20, "failed", 9.0, None)
    snap = stats.snapshot()
    assert snap["jobs_5m"] == 6 and snap["jobs_1h"] == 8
    assert snap["success_rate_5m"] == round(5 / 6, 4)
    assert snap["success_rate_1h"] == round(5 / 8, 4)
    assert snap["latency_p50_s"] == 3.0  # successful jobs only
    assert snap["latency_p95_s"] == 10.0
    assert snap["rtf_mean"] == 0.2


def test_outcomes_older_than_an_hour_are_forgotten():
    clock = Clock()
    stats = JobStats(clock=clock)
    stats.job_finished(1, "succeeded", 1.0, 0.1)
    clock.now += 3601
    snap = stats.snapshot()
    assert snap["jobs_1h"] == 0 and snap["success_rate_1h"] is None and snap["latency_p50_s"] is None


def test_running_count_follows_start_and_finish():
    stats = JobStats()
    stats.job_started(7)
    stats.job_started(8)
    stats.job_finished(7, "succeeded", 1.0, 0.3)
    assert stats.snapshot()["jobs_running"] == 1
    snap = stats.snapshot(running=5, queued=2, draining=True)
    assert (snap["jobs_running"], snap["jobs_queued"], snap["draining"]) == (5, 2, True)
