"""What ``/metrics`` exposes, built with prometheus_client.

GPU gauges keep dcgm-exporter's names *and meanings* (DCGM_FI_DEV_GPU_UTIL, DCGM_FI_DEV_FB_USED,
…; DCGM_FI_DEV_XID_ERRORS is the value of the last XID, as dcgm reports it) with its
``gpu``/``UUID``/``device``/``Hostname`` labels plus ``node``, so existing Grafana boards for
dcgm-exporter work. (dcgm-exporter's ``modelName`` label is camelCase, which promtool's lint
refuses; the model is on ``voxfleet_gpu_info`` instead.) Everything about the fleet is read
from the database at scrape time, so any console process answers for the whole fleet.

Job figures are counters and histograms, never precomputed percentiles: each agent reports its
cumulative outcome counts and latency/RTF bucket counts (checked by fleetagent.frames), exposed
per node. A node can only misreport its own series. Tokens charged are summed from the billing
ledger per plan in a fixed number of queries (not one per tenant). HTTP requests are counted per route and
status by ``http_metrics_middleware`` in this process (in prometheus_client's multiprocess
mode when PROMETHEUS_MULTIPROC_DIR is set, as for ``uvicorn --workers N``).
"""

from __future__ import annotations

import os
import time

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from billing.selectors import tokens_charged_by_plan
from fleetagent.choices import NodeState
from fleetagent.protocol import JOB_RTF_BUCKETS, JOB_SECONDS_BUCKETS
from fleetagent.selectors import node_snapshot_list

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# No *_created series: they double the exposition and dashboards never use them.
disable_created_metrics()
GPU_LABELS = ("gpu", "UUID", "device", "Hostname", "node")

# (dcgm-exporter name, help as dcgm-exporter words it, reading key)
DCGM_GAUGES = (
    ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", "utilization"),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).", "memory_utilization"),
    ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", "vram_used_mb"),
    ("DCGM_FI_DEV_FB_TOTAL", "Framebuffer memory total (in MiB).", "vram_total_mb"),
    ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", "temperature_c"),
    ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", "power_w"),
    ("DCGM_FI_DEV_POWER_MGMT_LIMIT", "Power management limit (in W).", "power_limit_w"),
    ("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", "sm_clock_mhz"),
    ("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "Current clock throttle reasons (bitmask).", "throttle_reasons"),
)


def _gpu_labels(snap: dict, gpu: dict) -> list[str]:
    inventory = {g.get("index"): g for g in snap.get("gpu_inventory") or [] if isinstance(g, dict)}
    uuid = (inventory.get(gpu["index"]) or {}).get("uuid") or ""
    return [str(gpu["index"]), uuid, f"nvidia{gpu['index']}", snap["hostname"], snap["name"]]


class FleetCollector:
    """Every node and GPU, read from the database when Prometheus scrapes."""

    def collect(self):
        snapshots = node_snapshot_list()
        yield from self._gpus(snapshots)
        yield from self._nodes(snapshots)
        yield from self._jobs(snapshots)

    def _gpus(self, snapshots):
        gauges = {key: GaugeMetricFamily(name, text, labels=GPU_LABELS) for name, text, key in DCGM_GAUGES}
        fb_free = GaugeMetricFamily("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", labels=GPU_LABELS)
        xid = GaugeMetricFamily("DCGM_FI_DEV_XID_ERRORS", "Value of the last XID error encountered.", labels=GPU_LABELS)
        xid_count = CounterMetricFamily(
            "voxfleet_gpu_xid_errors", "XID critical errors the agent has seen since it started.", labels=GPU_LABELS
        )
        ecc = CounterMetricFamily(
            "voxfleet_gpu_ecc_errors", "Volatile ECC errors, corrected and uncorrected.", labels=GPU_LABELS
        )
        info = GaugeMetricFamily(
            "voxfleet_gpu_info",
            "GPU identity (always 1): the model dcgm-exporter calls modelName.",
            labels=(*GPU_LABELS, "model_name"),
        )
        for snap in snapshots:
            if snap["state"] == NodeState.OFFLINE:
                continue  # no fresh readings: absent, as dcgm-exporter's series are when it is down
            for gpu in snap["gpus"]:
                labels = _gpu_labels(snap, gpu)
                for key, family in gauges.items():
                    if gpu.get(key) is not None:
                        family.add_metric(labels, float(gpu[key]))
                if gpu.get("vram_total_mb"):
                    fb_free.add_metric(labels, max(0.0, gpu["vram_total_mb"] - (gpu.get("vram_used_mb") or 0.0)))
                xid.add_metric(labels, float(gpu.get("last_xid") or 0))
                xid_count.add_metric(labels, float(gpu.get("xid_errors") or 0))
                ecc.add_metric(labels, float(gpu.get("ecc_errors") or 0))
                info.add_metric([*labels, snap["gpu_model"]], 1.0)
        yield from gauges.values()
        yield from (fb_free, xid, xid_count, ecc, info)

    def _nodes(self, snapshots):
        up = GaugeMetricFamily("voxfleet_node_up", "1 when the node's agent is heartbeating.", labels=("node",))
        state = GaugeMetricFamily(
            "voxfleet_node_state", "Current state of the node (1 for the active state).", labels=("node", "state")
        )
        drained = GaugeMetricFamily("voxfleet_node_drained", "1 when ops drained the node.", labels=("node",))
        agents = GaugeMetricFamily("voxfleet_agents_connected", "Agents with a websocket to the console.")
        running = GaugeMetricFamily("voxfleet_node_jobs_running", "Jobs running on the node.", labels=("node",))
        queued = GaugeMetricFamily("voxfleet_node_jobs_queued", "Jobs queued for the node.", labels=("node",))
        refused = CounterMetricFamily(
            "voxfleet_agent_frames_refused", "Agent frames the console refused (schema, size, rate).", labels=("node",)
        )
        cpu = GaugeMetricFamily(
            "voxfleet_node_cpu_percent", "Host CPU utilization of a node without NVML (in %).", labels=("node",)
        )
        ram_used = GaugeMetricFamily(
            "voxfleet_node_ram_used_mebibytes", "Host RAM used on a node without NVML.", labels=("node",)
        )
        ram_total = GaugeMetricFamily(
            "voxfleet_node_ram_total_mebibytes", "Host RAM of a node without NVML.", labels=("node",)
        )
        connected = 0
        for snap in snapshots:
            name = snap["name"]
            up.add_metric([name], 0.0 if snap["state"] == NodeState.OFFLINE else 1.0)
            for value in NodeState.values:
                state.add_metric([name, value], float(snap["state"] == value))
            drained.add_metric([name], float(bool(snap.get("drained"))))
            connected += bool(snap["agent_connected"])
            running.add_metric([name], float(snap["stats"].get("jobs_running") or 0))
            queued.add_metric([name], float(snap["stats"].get("jobs_queued") or 0))
            refused.add_metric([name], float(snap.get("frames_refused") or 0))
            host = snap["host"]
            if host:
                cpu.add_metric([name], float(host["cpu_percent"]))
                ram_used.add_metric([name], float(host["ram_used_mb"]))
                ram_total.add_metric([name], float(host["ram_total_mb"]))
        agents.add_metric([], float(connected))
        yield from (up, state, drained, agents, running, queued, refused, cpu, ram_used, ram_total)

    def _jobs(self, snapshots):
        jobs = CounterMetricFamily(
            "voxfleet_jobs",
            "Jobs finished on the node, by outcome (since its agent started).",
            labels=("node", "outcome"),
        )
        seconds = HistogramMetricFamily(
            "voxfleet_job_duration_seconds", "Engine time of succeeded jobs.", labels=("node",)
        )
        rtf = HistogramMetricFamily(
            "voxfleet_job_rtf", "Real-time factor of succeeded jobs (engine time / audio time).", labels=("node",)
        )
        for snap in snapshots:
            stats = snap["stats"]
            for outcome, count in (stats.get("jobs_total") or {}).items():
                jobs.add_metric([snap["name"], outcome], float(count))
            for family, key, edges in (
                (seconds, "job_seconds", JOB_SECONDS_BUCKETS),
                (rtf, "job_rtf", JOB_RTF_BUCKETS),
            ):
                hist = stats.get(key)
                if hist:
                    buckets = [(f"{edge:g}", float(n)) for edge, n in zip(edges, hist["buckets"], strict=True)]
                    buckets.append(("+Inf", float(hist["count"])))
                    family.add_metric([snap["name"]], buckets, float(hist["sum"]))
        yield from (jobs, seconds, rtf)


class BillingCollector:
    """Tokens charged, by plan, from the billing ledger when Prometheus scrapes (a fixed,
    small label set: one series per plan, however many tenants there are)."""

    def collect(self):
        charged = CounterMetricFamily(
            "voxfleet_tokens_charged",
            "Tokens charged to tenants (settled jobs), by the plan the tenant was on when charged.",
            labels=("plan",),
        )
        for plan, tokens in tokens_charged_by_plan().items():
            charged.add_metric([plan], float(tokens))
        yield charged


# --- HTTP requests (this process; summed across processes in multiprocess mode) -------------

_local = CollectorRegistry(auto_describe=True)
HTTP_REQUESTS = Counter(
    "voxfleet_http_requests",
    "HTTP requests answered, by route and status.",
    ("route", "method", "status"),
    registry=_local,
)
HTTP_SECONDS = Histogram(
    "voxfleet_http_request_duration_seconds",
    "Time to answer an HTTP request, by route.",
    ("route",),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=_local,
)


def _route(request) -> str:
    # The URL pattern, never the path: label values must be few (no ids, no node names).
    match = getattr(request, "resolver_match", None)
    return f"/{match.route}" if match is not None and match.route else "unmatched"


def http_metrics_middleware(get_response):
    """Count every request by route and status (sync and async views alike)."""
    from asgiref.sync import iscoroutinefunction, markcoroutinefunction

    def observe(request, response, started: float) -> None:
        route = _route(request)
        HTTP_REQUESTS.labels(route, request.method, str(response.status_code)).inc()
        HTTP_SECONDS.labels(route).observe(time.perf_counter() - started)

    if iscoroutinefunction(get_response):

        async def middleware(request):
            started = time.perf_counter()
            response = await get_response(request)
            observe(request, response, started)
            return response

        markcoroutinefunction(middleware)
        return middleware

    def middleware(request):
        started = time.perf_counter()
        response = get_response(request)
        observe(request, response, started)
        return response

    return middleware


# Either mode, so a request's middleware chain runs on the event loop (Django hops to a
# thread only for the view).
http_metrics_middleware.sync_capable = True
http_metrics_middleware.async_capable = True


def metrics_text() -> bytes:
    """The exposition: the fleet and billing from the database, HTTP counters from this process (or all of them)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector())
    registry.register(BillingCollector())
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(_LocalCollector())
    return generate_latest(registry)


class _LocalCollector:
    def collect(self):
        yield from _local.collect()
