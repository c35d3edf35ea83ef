"""``/metrics``: the whole fleet in Prometheus text format, named like dcgm-exporter.

GPU gauges reuse dcgm-exporter's names (DCGM_FI_DEV_GPU_UTIL, DCGM_FI_DEV_FB_USED, …) with
``node``/``gpu``/``UUID``-style labels, so existing Grafana boards for dcgm-exporter work;
node-level figures that DCGM has no field for are ``voxfleet_node_*``. Readable by a staff
session or ``Authorization: Bearer <METRICS_TOKEN>`` (Prometheus scrapers).
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.http import require_GET

from fleetagent.models import NodeState
from fleetagent.selectors import node_snapshot_list

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# (metric name, type, help, reading key, scale)
GPU_METRICS = (
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).", "utilization", 1),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %).", "memory_utilization", 1),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB).", "vram_used_mb", 1),
    ("DCGM_FI_DEV_FB_TOTAL", "gauge", "Framebuffer memory total (in MiB).", "vram_total_mb", 1),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C).", "temperature_c", 1),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", "power_w", 1),
    ("DCGM_FI_DEV_POWER_MGMT_LIMIT", "gauge", "Enforced power limit (in W).", "power_limit_w", 1),
    ("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz).", "sm_clock_mhz", 1),
    ("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "gauge", "Current clock throttle reasons (bitmask).", "throttle_reasons", 1),
    ("DCGM_FI_DEV_XID_ERRORS", "counter", "XID critical errors seen by the agent.", "xid_errors", 1),
    ("voxfleet_gpu_ecc_errors", "counter", "Volatile ECC errors, corrected + uncorrected.", "ecc_errors", 1),
)

NODE_METRICS = (
    ("voxfleet_node_jobs_running", "Jobs running on the node.", "jobs_running"),
    ("voxfleet_node_jobs_queued", "Jobs queued for the node.", "jobs_queued"),
    ("voxfleet_node_success_rate_5m", "Share of jobs that succeeded, last 5 minutes.", "success_rate_5m"),
    ("voxfleet_node_success_rate_1h", "Share of jobs that succeeded, last hour.", "success_rate_1h"),
    ("voxfleet_node_latency_p50_seconds", "Median job latency, last 5 minutes.", "latency_p50_s"),
    ("voxfleet_node_latency_p95_seconds", "95th percentile job latency, last 5 minutes.", "latency_p95_s"),
    ("voxfleet_node_rtf_mean", "Mean real-time factor, last 5 minutes.", "rtf_mean"),
)


def _label(value) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in labels.items()) + "}"


def metrics_render(snapshots: list[dict]) -> str:
    lines: list[str] = []
    for name, kind, help_text, key, scale in GPU_METRICS:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for snap in snapshots:
            for gpu in snap["gpus"]:
                value = gpu.get(key)
                if value is None:
                    continue
                labels = _labels(
                    gpu=gpu["index"], node=snap["name"], modelName=snap["gpu_model"], Hostname=snap["hostname"]
                )
                lines.append(f"{name}{labels} {float(value) * scale:g}")
    lines += ["# HELP voxfleet_node_up 1 when the node's agent is heartbeating.", "# TYPE voxfleet_node_up gauge"]
    for snap in snapshots:
        lines.append(f"voxfleet_node_up{_labels(node=snap['name'])} {0 if snap['state'] == NodeState.OFFLINE else 1}")
    lines += [
        "# HELP voxfleet_node_state Current state of the node (1 for the active state).",
        "# TYPE voxfleet_node_state gauge",
    ]
    for snap in snapshots:
        for state in NodeState.values:
            lines.append(f"voxfleet_node_state{_labels(node=snap['name'], state=state)} {int(snap['state'] == state)}")
    for name, help_text, key in NODE_METRICS:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for snap in snapshots:
            value = snap["stats"].get(key)
            if value is not None:
                lines.append(f"{name}{_labels(node=snap['name'])} {float(value):g}")
    host_metrics = (
        ("voxfleet_node_cpu_percent", "Host CPU utilization of a node without NVML (in %).", "cpu_percent"),
        ("voxfleet_node_ram_used_mib", "Host RAM used on a node without NVML (in MiB).", "ram_used_mb"),
        ("voxfleet_node_ram_total_mib", "Host RAM total on a node without NVML (in MiB).", "ram_total_mb"),
    )
    for name, help_text, key in host_metrics:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for snap in snapshots:
            if snap["host"]:
                lines.append(f"{name}{_labels(node=snap['name'])} {float(snap['host'][key]):g}")
    return "\n".join(lines) + "\n"


def _token_ok(request) -> bool:
    expected = settings.METRICS_TOKEN
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if not expected or scheme.lower() != "bearer":
        return False
    # Bytes, not str: compare_digest raises TypeError on non-ASCII text, and any credential a
    # client can send must come back as 401, never 500. Headers arrive decoded as latin-1.
    return hmac.compare_digest(token.strip().encode("latin-1", "replace"), expected.encode())


@require_GET
def metrics(request):
    if not (_token_ok(request) or (request.user.is_authenticated and request.user.is_staff)):
        return HttpResponse(
            "Staff session or Authorization: Bearer <METRICS_TOKEN> required.\n",
            status=401 if not request.user.is_authenticated else 403,
            content_type="text/plain",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    return HttpResponse(metrics_render(node_snapshot_list()), content_type=CONTENT_TYPE)
