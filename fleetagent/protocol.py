"""The agent <-> console websocket protocol (JSON text frames), versioned.

Version 2 (the console also accepts version 1 agents, so hosts can be upgraded one by one;
upgrade the console first). Every frame is a JSON object with ``"type"`` and ``"v"`` (the
protocol version); the console answers each agent in the version of its hello.

agent -> console
  hello   {node, hostname, agent_version, engine, nvml, gpu_model, gpus: [{index, name, uuid, vram_total_mb}],
           jobs: [job id]}   jobs: what this process still runs; the console requeues the node's
           other running jobs at once (they died with an earlier process). Optional: without it
           the heartbeat timeout decides.
  sample  {seq, ts, gpus: [GPU reading], host: {cpu_percent, ram_used_mb, ram_total_mb}, node: NODE stats}
  ack     {command_id, action, ok, detail: {...}, error}
  bye     {reason}   a clean stop: the console marks the node offline at once and moves its queued jobs
console -> agent
  welcome {node, sample_interval_s, protocol}
  command {command_id, action: drain|resume|restart}
  error   {code, message}   (then the console closes the socket)

GPU reading keys: index, utilization, memory_utilization, vram_used_mb, vram_total_mb,
temperature_c, power_w, power_limit_w, sm_clock_mhz, throttle_reasons, ecc_errors,
xid_errors, processes: [{pid, vram_used_mb}]. A CPU-mode agent sends ``gpus: []`` and
``nvml: false``; its host block carries the figures instead.
NODE stats keys: jobs_running, jobs_queued, success_rate_5m, success_rate_1h, jobs_5m,
jobs_1h, latency_p50_s, latency_p95_s, rtf_mean, draining, and (optional) jobs_total,
job_seconds, job_rtf: cumulative counts and histograms since the agent started.
``ts`` is the agent's wall clock (seconds since the epoch) when the reading was taken;
dashboards use it to show (and the benchmark to measure) agent -> dashboard latency.
A GPU reading may also carry ``last_xid`` (the newest XID code, dcgm's meaning of XID).

Every agent frame is checked against the schema in ``fleetagent.frames`` (types, finite
numbers in range, at most 16 GPUs, a size and a rate cap); a refused frame is answered with
``error {code: "bad_frame", message}`` and counted, and a refused hello, an unparseable frame
or a flood closes the socket (CLOSE_BAD_PROTOCOL, CLOSE_RATE_LIMITED).

Version 2 differs from 1 in one thing: ``welcome`` carries ``draining``, the state the
console wants the node in (the console is the source of truth: a drained node stays drained
across disconnects and agent restarts), and a v2 agent applies it before its first sample.
A v1 agent whose hello disagrees with the console is sent a ``command`` instead.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

PROTOCOL_VERSION = 2
SUPPORTED_VERSIONS = frozenset({1, 2})
AGENT_VERSION = "1.1.0"

HELLO = "hello"
SAMPLE = "sample"
ACK = "ack"
BYE = "bye"
WELCOME = "welcome"
COMMAND = "command"
ERROR = "error"

AGENT_TYPES = frozenset({HELLO, SAMPLE, ACK, BYE})
CONSOLE_TYPES = frozenset({WELCOME, COMMAND, ERROR})

ACTIONS = ("drain", "resume", "restart")

# The per-GPU readings of a sample; also the columns of GpuSample and its rollups.
GPU_METRIC_FIELDS = (
    "utilization",
    "memory_utilization",
    "vram_used_mb",
    "vram_total_mb",
    "temperature_c",
    "power_w",
    "power_limit_w",
    "sm_clock_mhz",
    "throttle_reasons",
    "ecc_errors",
    "xid_errors",
    "last_xid",
)
GPU_FIELDS = ("index", *GPU_METRIC_FIELDS)
NODE_FIELDS = (
    "jobs_running",
    "jobs_queued",
    "success_rate_5m",
    "success_rate_1h",
    "jobs_5m",
    "jobs_1h",
    "latency_p50_s",
    "latency_p95_s",
    "rtf_mean",
    "draining",
    # Cumulative since the agent started (Prometheus counters and histograms; a restart resets them):
    "jobs_total",  # {outcome: count}
    "job_seconds",  # {"buckets": [count <= edge for each JOB_SECONDS_BUCKETS edge], "sum", "count"}
    "job_rtf",  # the same over JOB_RTF_BUCKETS
)
JOB_SECONDS_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)
JOB_RTF_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)

# Close codes the console uses when it refuses an agent (4000-4999 are application codes).
CLOSE_UNAUTHORIZED = 4401
CLOSE_BAD_PROTOCOL = 4400
CLOSE_RATE_LIMITED = 4429


class ProtocolError(ValueError):
    """A frame that is not valid for this protocol version."""


def message_encode(kind: str, *, version: int = PROTOCOL_VERSION, **fields: Any) -> str:
    return json.dumps({"type": kind, "v": version, **fields}, separators=(",", ":"))


def message_decode(text: str | bytes, *, allowed: frozenset[str]) -> dict:
    """Parse and check one frame; ProtocolError when it cannot be understood."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ProtocolError("frame must be a JSON object")
    if type(data.get("v")) is not int or data["v"] not in SUPPORTED_VERSIONS:
        raise ProtocolError(f"unsupported protocol version {data.get('v')!r}, this side speaks {PROTOCOL_VERSION}")
    kind = data.get("type")
    if kind not in allowed:
        raise ProtocolError(f"unexpected message type {kind!r}")
    if kind == SAMPLE:
        if not isinstance(data.get("gpus", []), list) or not isinstance(data.get("ts"), int | float):
            raise ProtocolError("sample needs a numeric ts and a gpus list")
    if kind == COMMAND and data.get("action") not in ACTIONS:
        raise ProtocolError(f"unknown action {data.get('action')!r}")
    if kind == ACK and not isinstance(data.get("command_id"), int):
        raise ProtocolError("ack needs an integer command_id")
    return data


# --- broker credentials of a node (RabbitMQ) ---------------------------------------------------
# Each node has its own broker user, ``vfnode-<node name>``, whose password is derived from the
# node token: the console sets it when it creates or rotates the token (the only times it sees
# the plaintext), and the host computes the same from the token it was given, so a host needs
# the console URL, its token and the broker's address, nothing else. Rotating the token
# rotates the broker password; the old one stops working at once.
BROKER_USER_PREFIX = "vfnode-"


def broker_username(node_name: str) -> str:
    return f"{BROKER_USER_PREFIX}{node_name}"


def broker_password(token: str) -> str:
    return hmac.new(token.encode(), b"voxfleet-broker-v1", hashlib.sha256).hexdigest()
