"""The agent <-> console websocket protocol (JSON text frames), versioned.

Version 3 (the console also accepts version 1 and 2 agents, so hosts can be upgraded one by
one; upgrade the console first). A GPU host (``python -m fleetagent``) speaks 3; the embedded
local node of the console, whose jobs run in the console's own process, speaks 2. Every frame is a JSON object with ``"type"`` and ``"v"`` (the
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

Version 3: a host runs its jobs with no database (job frames)
  A v3 host holds no database credentials and shares no disk with the console. The job message
  on its broker queue (Celery task ``RUN_JOB_TASK``, kwargs ``{"job": JOB}``) carries what the
  engine needs; the host fetches a cloned voice's prompt audio from the console over HTTP with
  its node token (``GET /fleet/v1/jobs/<job_id>/prompt-audio``, allowed only while that job is
  open on this node; cached on the host per voice key and version); the host streams the audio
  back on this websocket, and the console alone writes the output and settles or releases.

  JOB keys: job_id, attempt (the number this run will be: a report naming any other attempt is
  refused), text, language, instruction (the parsed instruction as a dict, or null), seed,
  speed, deadline_ts (epoch seconds; the host gives up after it), voice: {key, version,
  language, gender, display_name, profile (dict or null), prompt_transcript, has_prompt_audio}.

  agent -> console (v3)
    job_start {job_id, attempt}   ask to run it; the console claims it (queued -> running,
                                  conditional on this node and attempt) and answers job_claim
    job_renew {jobs: [[job_id, attempt], ...]}   lease renewal, sent every LEASE_RENEW_S while
                                  the host holds jobs; a lease not renewed for LEASE_S is
                                  reclaimed by the console (the job is requeued)
    job_done  {job_id, attempt, audio_bytes, gpu_seconds, audio_seconds, engine_version}
                                  all audio was sent (audio_bytes: the PCM byte count, checked)
    job_fail  {job_id, attempt, code, message}
    binary frame: AUDIO_HEADER (magic b"VXA3", job_id u64, attempt u32, sample_rate u32, offset
                  u64: the PCM byte offset of this piece) + 16-bit LE mono PCM, at most
                  AUDIO_FRAME_MAX bytes in all
  console -> agent (v3)
    job_claim {job_id, attempt, ok, reason}   ok false: not this node's (any more): drop it
                                  (reason: already_running, past_deadline, not_your_job, or the
                                  status the job ended in: cancelled, failed, ...)
    job_closed {job_id, attempt, status}      the console's word on a job_done/job_fail
                                  (status: succeeded | failed | refused); also sent unasked,
                                  status refused, when a renewal or an audio frame names a job
                                  that ended meanwhile (cancelled, past its deadline): drop it
  A v3 hello's ``jobs`` is a list of [job_id, attempt] pairs (a v2 hello's: job ids).
  A frame about a job that is not running on this node in that attempt is refused with
  ``error {code: "not_your_job", message, job_id, attempt}`` (not fatal) and logged; it changes
  nothing. Nodes whose agent speaks v1/v2 (they still claim in the database) get the legacy
  task ``inference.synthesize``.
  Audio of an attempt is one stream on one connection: it starts at offset 0 and each frame
  continues exactly where the last ended (a gap, an overlap or another sample rate is refused
  with ``error {code: "bad_frame"}``); the console discards a partial stream when the socket
  closes, so after a reconnect a host sends a held job's audio again from offset 0. A job_done
  whose audio_bytes differ from what the console holds fails the job (nothing is charged).
  Job frames have their own rate budget (not the 5 frames/s of samples); binary frames are
  counted in bytes per node.

Version 2 differs from 1 in one thing: ``welcome`` carries ``draining``, the state the
console wants the node in (the console is the source of truth: a drained node stays drained
across disconnects and agent restarts), and a v2 agent applies it before its first sample.
A v1 agent whose hello disagrees with the console is sent a ``command`` instead.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from typing import Any

PROTOCOL_VERSION = 3  # a GPU host (python -m fleetagent); the embedded local node still speaks 2
SUPPORTED_VERSIONS = frozenset({1, 2, 3})
# From this version on a host runs jobs with no database (job frames, RUN_JOB_TASK).
JOB_FRAMES_FROM = 3
AGENT_VERSION = "1.2.0"

HELLO = "hello"
SAMPLE = "sample"
ACK = "ack"
BYE = "bye"
WELCOME = "welcome"
COMMAND = "command"
ERROR = "error"

JOB_START = "job_start"
JOB_RENEW = "job_renew"
JOB_DONE = "job_done"
JOB_FAIL = "job_fail"
JOB_CLAIM = "job_claim"
JOB_CLOSED = "job_closed"

AGENT_TYPES = frozenset({HELLO, SAMPLE, ACK, BYE, JOB_START, JOB_RENEW, JOB_DONE, JOB_FAIL})
CONSOLE_TYPES = frozenset({WELCOME, COMMAND, ERROR, JOB_CLAIM, JOB_CLOSED})

# The Celery task a v3 host's worker runs (kwargs {"job": JOB}); it never touches a database.
RUN_JOB_TASK = "fleetagent.run_job"
# Job leases: renewed every LEASE_RENEW_S while held, reclaimed LEASE_S after the last renewal.
LEASE_S = 6.0
LEASE_RENEW_S = 2.0
# Binary audio frames: header, then 16-bit LE PCM; at most this many bytes per frame.
AUDIO_MAGIC = b"VXA3"
AUDIO_HEADER = struct.Struct("<4sQIIQ")
AUDIO_FRAME_MAX = 512 * 1024

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


# --- binary audio frames (v3) ------------------------------------------------------------------
def audio_frame_encode(*, job_id: int, attempt: int, sample_rate: int, offset: int, pcm: bytes) -> bytes:
    return AUDIO_HEADER.pack(AUDIO_MAGIC, job_id, attempt, sample_rate, offset) + pcm


def audio_frame_decode(data: bytes) -> tuple[int, int, int, int, bytes]:
    """(job_id, attempt, sample_rate, offset, pcm) of a binary frame; ProtocolError if malformed."""
    if not isinstance(data, bytes | bytearray | memoryview) or len(data) < AUDIO_HEADER.size:
        raise ProtocolError("binary frame shorter than the audio header")
    if len(data) > AUDIO_FRAME_MAX:
        raise ProtocolError(f"audio frame of {len(data)} bytes is over {AUDIO_FRAME_MAX}")
    magic, job_id, attempt, sample_rate, offset = AUDIO_HEADER.unpack_from(data)
    if magic != AUDIO_MAGIC:
        raise ProtocolError("binary frame is not an audio frame")
    pcm = bytes(data[AUDIO_HEADER.size :])
    if len(pcm) % 2 or not 8000 <= sample_rate <= 96000:
        raise ProtocolError("audio frame needs 16-bit PCM at 8-96 kHz")
    return job_id, attempt, sample_rate, offset, pcm
