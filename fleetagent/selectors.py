"""Fleet reads: which node takes a job, and what the dashboards and /metrics show."""

from __future__ import annotations

from collections.abc import Container
from datetime import timedelta

from django.db import connection
from django.db.models import Avg, Count, F, Sum
from django.db.models.functions import TruncMinute
from django.utils import timezone

from console.errors import NotFound
from fleetagent.choices import NodeState
from fleetagent.models import GpuSample, Node, NodeAction
from fleetagent.protocol import GPU_FIELDS


def node_find(*, name: str) -> Node | None:
    """The node called ``name``, or None."""
    return Node.objects.filter(name=name).first()


def node_get(*, node_id: int) -> Node:
    """The node with this id; NotFound if it was deleted."""
    node = Node.objects.filter(pk=node_id).first()
    if node is None:
        raise NotFound(f"Unknown node #{node_id}.", code="node_not_found")
    return node


def node_action_find(*, action_id: int) -> NodeAction | None:
    """One audit-log entry (with its node and requester), or None."""
    return NodeAction.objects.select_related("node", "requested_by").filter(pk=action_id).first()


def node_pick_for_tenant(*, tenant) -> Node | None:
    """The online node that should run this tenant's next job, or None when none can.

    Enterprise tenants (plan with dedicated nodes) run only on their own dedicated nodes
    (private deployment); everyone else runs only on shared nodes. Among those, the least
    busy by the agent's last heartbeat (running + queued jobs), then by name for stability.
    Draining, stuck, restarting and offline nodes are never picked.
    """
    nodes = Node.objects.filter(state=NodeState.ONLINE)
    if tenant is not None and getattr(tenant.plan, "dedicated_nodes", False):
        nodes = nodes.filter(dedicated_tenant=tenant)
    else:
        nodes = nodes.filter(dedicated_tenant__isnull=True)
    return nodes.annotate(load=F("jobs_running") + F("jobs_queued")).order_by("load", "name").first()


def _last_action(node_ids: list[int]) -> dict[int, dict]:
    out: dict[int, dict] = {}
    actions = NodeAction.objects.filter(node_id__in=node_ids).select_related("node", "requested_by")
    for action in actions.order_by("-id")[:500]:
        if action.node_id not in out:
            out[action.node_id] = node_action_dict(action)
    return out


def node_action_dict(action: NodeAction) -> dict:
    return {
        "id": action.pk,
        "node": action.node.name,
        "action": action.action,
        "outcome": action.outcome,
        "message": action.message,
        "detail": action.detail,
        "requested_by": action.requested_by.username if action.requested_by else None,
        "requested_at": action.requested_at.isoformat(),
        "acknowledged_at": action.acknowledged_at.isoformat() if action.acknowledged_at else None,
    }


def gpu_latest(*, node_ids: list[int] | None = None, within_s: int = 15) -> dict[int, list[dict]]:
    """The newest 1 s reading of each GPU (or CPU host row) per node, from the last ``within_s`` seconds."""
    since = timezone.now() - timedelta(seconds=within_s)
    rows = GpuSample.objects.filter(resolution_s=GpuSample.RESOLUTION_RAW, at__gte=since)
    if node_ids is not None:
        rows = rows.filter(node_id__in=node_ids)
    if connection.features.can_distinct_on_fields:
        # PostgreSQL picks the newest row per GPU itself: at 5,000 GPUs the window holds
        # 75,000 rows, and only 5,000 of them should cross the wire into Python.
        rows = rows.order_by("node_id", "gpu_index", "-at").distinct("node_id", "gpu_index")
    else:
        rows = rows.order_by("-at")
    seen: set[tuple[int, int]] = set()
    out: dict[int, list[dict]] = {}
    for row in rows.values():
        key = (row["node_id"], row["gpu_index"])
        if key in seen:
            continue
        seen.add(key)
        row["ts"] = row.pop("at").timestamp()
        row["index"] = row.pop("gpu_index")
        out.setdefault(row["node_id"], []).append(row)
    for readings in out.values():
        readings.sort(key=lambda r: r["index"])
    return out


def node_snapshot_list(*, node_ids: list[int] | None = None, readings_known: Container[int] = ()) -> list[dict]:
    """What a dashboard shows per node: identity, state, live stats, newest GPU readings, last action.

    ``readings_known``: nodes whose newest readings the caller has already (the console's
    hub, live): their readings are not read (``gpus`` empty, ``host`` and ``ts`` None).
    """
    nodes = Node.objects.select_related("dedicated_tenant")
    if node_ids is not None:
        nodes = nodes.filter(pk__in=node_ids)
    nodes = list(nodes)
    ids = [n.pk for n in nodes]
    actions = _last_action(ids)
    unknown = [i for i in ids if i not in readings_known]
    latest = gpu_latest(node_ids=unknown) if unknown else {}
    out = []
    for node in nodes:
        readings = latest.get(node.pk, [])
        gpus = [r for r in readings if r["index"] >= 0]
        host = next((r for r in readings if r["index"] < 0), None)
        out.append(
            {
                "id": node.pk,
                "name": node.name,
                "state": node.state,
                "state_reason": node.state_reason,
                "hostname": node.hostname,
                "gpu_model": node.gpu_model,
                "gpu_count": node.gpu_count,
                "nvml": node.nvml_available,
                "engine": node.engine,
                "agent_version": node.agent_version,
                "protocol_version": node.protocol_version,
                "agent_connected": bool(node.agent_channel),
                "drained": node.drained,
                "frames_refused": node.frames_refused,
                "last_refusal": node.last_refusal,
                "last_refusal_at": node.last_refusal_at.timestamp() if node.last_refusal_at else None,
                "gpu_inventory": node.gpus,
                "dedicated_tenant": node.dedicated_tenant.name if node.dedicated_tenant else None,
                "last_seen_at": node.last_seen_at.timestamp() if node.last_seen_at else None,
                "stats": {**node.stats, "jobs_running": node.jobs_running, "jobs_queued": node.jobs_queued},
                "gpus": [_reading(r) for r in gpus],
                "host": (
                    {
                        "cpu_percent": host["utilization"],
                        "ram_used_mb": host["vram_used_mb"],
                        "ram_total_mb": host["vram_total_mb"],
                    }
                    if host
                    else None
                ),
                "ts": max((r["ts"] for r in readings), default=None),
                "last_action": actions.get(node.pk),
            }
        )
    return out


def _reading(row: dict) -> dict:
    return {k: row[k] for k in GPU_FIELDS}


_SERIES_FIELDS = ("utilization", "memory_utilization", "vram_used_mb", "vram_total_mb", "temperature_c", "power_w")
_CHART_FIELDS = ("utilization", "vram_used_mb", "vram_total_mb", "temperature_c", "power_w")


def gpu_series(*, node: Node, minutes: int = 10) -> dict:
    """Per-GPU series for one node's charts: 1 s rows within the hour; beyond it the stored
    1 min rollups, joined by the last hour's 1 s rows averaged per minute (not yet rolled up)."""
    now = timezone.now()
    since = now - timedelta(minutes=minutes)
    if minutes <= 60:
        resolution = GpuSample.RESOLUTION_RAW
        rows = list(
            GpuSample.objects.filter(node=node, resolution_s=resolution, at__gte=since)
            .order_by("at")
            .values("gpu_index", "at", *_SERIES_FIELDS)
        )
    else:
        resolution = GpuSample.RESOLUTION_MINUTE
        rollups = list(
            GpuSample.objects.filter(node=node, resolution_s=resolution, at__gte=since)
            .order_by("at")
            .values("gpu_index", "at", *_SERIES_FIELDS)
        )
        newest = rollups[-1]["at"] if rollups else since
        recent = (
            GpuSample.objects.filter(node=node, resolution_s=GpuSample.RESOLUTION_RAW, at__gte=newest)
            .annotate(minute=TruncMinute("at"))
            .values("gpu_index", "minute")
            .annotate(**{k: Avg(k) for k in _SERIES_FIELDS})
            .order_by("minute")
        )
        rows = rollups + [{**r, "at": r.pop("minute")} for r in recent if r["minute"] > newest]
    series: dict[int, dict] = {}
    for row in rows:
        s = series.setdefault(row["gpu_index"], {"t": [], **{k: [] for k in _CHART_FIELDS}})
        s["t"].append(row["at"].timestamp())
        for k in _CHART_FIELDS:
            s[k].append(row[k])
    return {"resolution_s": resolution, "minutes": minutes, "gpus": {str(k): v for k, v in sorted(series.items())}}


def node_action_list(*, node: Node | None = None, limit: int = 50) -> list[NodeAction]:
    actions = NodeAction.objects.select_related("node", "requested_by")
    if node is not None:
        actions = actions.filter(node=node)
    return list(actions[:limit])


def fleet_alerts(*, snapshots: list[dict]) -> list[dict]:
    """Alerts the dashboard lists: offline, stuck, XID errors, overheating."""
    alerts = []
    for snap in snapshots:
        if snap["state"] in ("offline", "stuck"):
            alerts.append(
                {"node": snap["name"], "kind": snap["state"], "message": snap["state_reason"] or snap["state"]}
            )
        for gpu in snap["gpus"]:
            if gpu.get("xid_errors"):
                alerts.append(
                    {
                        "node": snap["name"],
                        "kind": "xid",
                        "message": f"GPU {gpu['index']}: {gpu['xid_errors']} XID error(s)",
                    }
                )
            temp = gpu.get("temperature_c")
            if temp is not None and temp >= OVERHEAT_C:
                alerts.append(
                    {"node": snap["name"], "kind": "overheat", "message": f"GPU {gpu['index']} at {temp:.0f} °C"}
                )
    return alerts


# Datacenter GPUs start slowing down in the mid-80s °C; warn before they do.
OVERHEAT_C = 85.0


# --- the fleet page at fleet size: from the node table alone ---------------------------------


def fleet_summary() -> dict:
    """Nodes by state and GPUs registered, from the node table alone (the page's first line)."""
    by_state = dict(Node.objects.values_list("state").annotate(n=Count("pk")).order_by())
    totals = Node.objects.aggregate(gpus=Sum("gpu_count"), running=Sum("jobs_running"), queued=Sum("jobs_queued"))
    return {
        "nodes": " · ".join(f"{by_state[s]} {s}" for s in NodeState.values if by_state.get(s)) or "no nodes",
        "gpus": f"{totals['gpus'] or 0:,}",
        "jobs": f"{totals['running'] or 0} running, {totals['queued'] or 0} queued",
    }


def fleet_state_alerts(*, limit: int = 30) -> list[dict]:
    """Offline and stuck nodes (newest heartbeat first), in fleet_alerts' shape, without GPU readings."""
    nodes = Node.objects.filter(state__in=(NodeState.OFFLINE, NodeState.STUCK)).order_by("-last_seen_at", "name")
    return [
        {"node": n.name, "kind": n.state, "message": n.state_reason or n.state}
        for n in nodes.only("name", "state", "state_reason", "last_seen_at")[:limit]
    ]
