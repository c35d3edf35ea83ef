"""Channel-layer group names (the one place they are spelled) and the fan-out cadence."""

from __future__ import annotations

# Every ASGI process's fleet hub listens here; a hub hands what it receives to the dashboards
# connected to its own process (so one batch crosses Redis once per process, not once per
# browser). Processes without a hub of their own (Celery beat's sweep) publish here too.
HUBS = "fleet.hubs"

# Dashboards get one batched message per interval with every node that changed, not one per
# agent sample: at 1,000 GPUs/125 hosts and 1 Hz this is 5 messages/s per browser instead of 125.
# 0.2 s keeps agent -> dashboard latency well under the 500 ms p95 target.
FANOUT_INTERVAL_S = 0.2
# Samples are written to the database in one bulk insert per interval.
PERSIST_INTERVAL_S = 1.0
