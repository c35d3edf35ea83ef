"""What dashboards receive over ``/ws/ops/fleet/``: node updates with GPU readings as rows.

At 5,000 GPUs every node changes every second, so each batch is mostly GPU readings; sent
as arrays in ``GPU_WIRE_FIELDS`` order (named once per message in ``gpu_fields``) they are a
quarter of the size of objects, which is what 20 browsers parse and the server encodes.
Messages: ``snapshot`` (every node, on connect) and ``nodes`` (what changed since the last
batch; a node entry carries only the keys that came with that update).
"""

from __future__ import annotations

import json
import time

from django.db import connection

from fleetagent.protocol import GPU_FIELDS

GPU_WIRE_FIELDS = GPU_FIELDS


def gpus_as_rows(gpus: list[dict]) -> list[list]:
    return [[gpu.get(k) for k in GPU_WIRE_FIELDS] for gpu in gpus]


def node_for_wire(snapshot: dict) -> dict:
    """A node snapshot (fleetagent.selectors.node_snapshot_list) with its GPUs as rows."""
    return {**snapshot, "gpus": gpus_as_rows(snapshot["gpus"])}


def dashboard_message(kind: str, nodes: list[dict]) -> str:
    return json.dumps(
        {"type": kind, "sent_at": time.time(), "gpu_fields": GPU_WIRE_FIELDS, "nodes": nodes},
        separators=(",", ":"),
    )


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
