"""What dashboards receive over ``/ws/ops/fleet/``: a snapshot, then deltas.

GPU readings travel as arrays in ``GPU_WIRE_FIELDS`` order (named once per message in
``gpu_fields``): a quarter of the size of objects. Messages, each numbered (``seq``):

- ``snapshot`` (on connect, and whenever the browser asks with ``{"type": "resync"}``):
  every node, whole, as of batch ``seq``, empty keys left out (a dashboard replaces each
  node by its snapshot entry);
- ``nodes`` (batch ``seq``, the one after ``seq - 1``): per node that changed, ``id`` and only
  what differs from what the dashboard has: changed keys, and either ``gpus`` (every row,
  when the node's GPUs are new or their number or order changed) or ``gpu_delta``, one list
  per changed GPU ``[position, field, value, field, value, …]`` (field = index into
  ``gpu_fields``). A dashboard that misses a number asks for a resync and ignores batches
  until the snapshot comes.

Between console processes (the HUBS group) updates travel whole (``nodes`` without ``seq``):
each process's hub makes its own dashboards' deltas (``console.consumers.hub``).
"""

from __future__ import annotations

import json
import time

from django.db import connection

from fleetagent.protocol import GPU_FIELDS

GPU_WIRE_FIELDS = GPU_FIELDS


def gpus_as_rows(gpus: list[dict]) -> list[list]:
    return [[gpu.get(k) for k in GPU_WIRE_FIELDS] for gpu in gpus]


# Job figures for /metrics (cumulative histograms, from the database), not for browsers: at
# 625 nodes they were a third of every batch.
CUMULATIVE_STATS = frozenset({"jobs_total", "job_seconds", "job_rtf"})
# What a sample brings; everything else in a node entry comes from the database.
LIVE_KEYS = frozenset({"ts", "gpus", "host", "stats"})


def browser_stats(stats: dict) -> dict:
    return {k: v for k, v in stats.items() if k not in CUMULATIVE_STATS}


def node_for_wire(snapshot: dict) -> dict:
    """A node snapshot (fleetagent.selectors.node_snapshot_list) with its GPUs as rows."""
    return {**snapshot, "stats": browser_stats(snapshot["stats"]), "gpus": gpus_as_rows(snapshot["gpus"])}


def _given(value) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def snapshot_compact(entry: dict) -> dict:
    """A snapshot's node without its empty keys (None, "", [], {}): a dashboard starts each node afresh.

    At 625 nodes the empty inventory names, refusals and job figures were a third of the snapshot.
    """
    out = {k: v for k, v in entry.items() if _given(v)}
    if "gpu_inventory" in out:
        out["gpu_inventory"] = [{k: v for k, v in gpu.items() if _given(v)} for gpu in out["gpu_inventory"]]
    if "stats" in out:
        out["stats"] = {k: v for k, v in out["stats"].items() if _given(v)}
    return out


def dashboard_message(kind: str, nodes: list[dict], *, seq: int | None = None) -> str:
    message = {"type": kind, "sent_at": time.time(), "gpu_fields": GPU_WIRE_FIELDS, "nodes": nodes}
    if seq is not None:
        message["seq"] = seq
    return json.dumps(message, separators=(",", ":"))


def node_delta(sent: dict, update: dict) -> dict | None:
    """What turns ``sent`` (a dashboard's copy of a node, {} if none) into ``update`` merged over it.

    None when nothing differs. ``sent`` is updated in place to what the dashboard has afterwards.
    """
    out = {}
    readings = newer_reading(update, sent)
    for key, value in update.items():
        if key in LIVE_KEYS and not readings:
            continue
        if key == "gpus":
            rows = _gpu_delta(sent.get("gpus"), value)
            if rows is None:
                out["gpus"] = value
            elif rows:
                out["gpu_delta"] = rows
        elif key not in sent or sent[key] != value:
            out[key] = value
        sent[key] = value
    if not out:
        return None
    out["id"] = update["id"]
    return out


def newer_reading(entry: dict, than: dict) -> bool:
    """Whether entry's readings (LIVE_KEYS) replace than's: a database re-read can be older than the live ones."""
    if than.get("ts") is None:
        return True
    return entry.get("ts") is not None and entry["ts"] >= than["ts"]


def _gpu_delta(before: list[list] | None, after: list[list]) -> list[list] | None:
    """Changed fields per GPU row, or None when the rows must go whole (new, more, fewer, reordered)."""
    if before is None or len(before) != len(after):
        return None
    changes = []
    for pos, (old, new) in enumerate(zip(before, after, strict=True)):
        if old == new:
            continue
        if old[0] != new[0]:  # another GPU index at this position
            return None
        change = [pos]
        for field, (a, b) in enumerate(zip(old, new, strict=True)):
            if a != b:
                change += (field, b)
        changes.append(change)
    return changes


class DashboardCopy:
    """A dashboard's view of the fleet built from its messages (tests, the benchmark; the pages do the same in JS)."""

    RESYNC = '{"type":"resync"}'

    def __init__(self) -> None:
        self.nodes: dict[int, dict] = {}
        self.seq: int | None = None  # None: waiting for a snapshot
        self.fields: list[str] = list(GPU_WIRE_FIELDS)
        self.gaps = 0

    def apply(self, message: dict) -> list[dict] | None:
        """Merge one message and return its node entries; None: dropped, a snapshot is needed first.

        The first batch dropped after a gap in ``seq`` counts in ``gaps``: send RESYNC then.
        """
        if message["type"] == "snapshot":
            self.nodes = {}
        elif message["type"] != "nodes":
            return []
        elif self.seq is None or message["seq"] != self.seq + 1:
            self.gaps += self.seq is not None
            self.seq = None
            return None
        self.fields = message["gpu_fields"]
        self.seq = message["seq"]
        for entry in message["nodes"]:
            node = self.nodes.setdefault(entry["id"], {})
            for key, value in entry.items():
                if key == "gpu_delta":
                    for change in value:
                        row = node["gpus"][change[0]]
                        for i in range(1, len(change), 2):
                            row[change[i]] = change[i + 1]
                elif key == "gpus":
                    node["gpus"] = [list(row) for row in value]
                else:
                    node[key] = value
        return message["nodes"]

    def readings(self, node_id: int) -> list[dict]:
        return gpus_from_rows(self.fields, self.nodes.get(node_id, {}).get("gpus") or [])


def gpus_from_rows(fields: list[str], rows: list[list]) -> list[dict]:
    """The other way (tests, the benchmark): rows back to readings."""
    return [dict(zip(fields, row, strict=True)) for row in rows]


def off_the_shared_thread() -> bool:
    """Whether the fleet's bulk reads and writes may leave asgiref's one shared DB thread.

    On PostgreSQL they should: a second-long COPY must not queue every consumer's hello and
    ack behind it. SQLite has one writer at a time anyway, and a second connection writing
    at once gets "database is locked" instead of waiting, so there they stay on the one thread.
    """
    return connection.vendor != "sqlite"
