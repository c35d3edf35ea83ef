"""The schema of every frame an agent sends, checked before anything of it is used.

A node is trusted with its own work only (PRODUCT.md, The fleet): whatever it sends, nothing
of it may reach storage, ``/metrics`` or a dashboard unless it has the documented shape.
``agent_frame_parse`` turns one websocket text frame into a *cleaned* frame: only the keys
the protocol defines (unknown keys are dropped, so a v1 agent that adds fields still works),
numbers that are finite and within physical bounds, strings bounded in length, at most
``GPUS_MAX`` GPUs. Anything else raises ``FrameRefused`` with a message for the node's page
and a short ``reason`` for the counters. Pure code: no Django, no I/O (the engine layer).
"""

from __future__ import annotations

import json
import math
import time
from typing import NamedTuple

from fleetagent import protocol
from fleetagent.protocol import ProtocolError

# A sample of 16 GPUs with every field is about 6 KB of JSON; a hello with 16 GPUs' names
# and UUIDs about 3 KB. 64 Ki characters leaves room and keeps a hostile frame cheap to refuse.
FRAME_MAX_CHARS = 64 * 1024
GPUS_MAX = 16
PROCESSES_MAX = 64
# A sample older than the 1 s retention, or from the future beyond clock skew, is refused:
# its row would never be rolled up (or would sit ahead of every chart) and 1e20 is no date.
SAMPLE_MAX_AGE_S = 60 * 60
SAMPLE_MAX_AHEAD_S = 120
TEXT_MAX = 255

# Short reasons (label values of the refused-frames counter): a fixed, small set.
REASON_SIZE = "size"
REASON_JSON = "json"
REASON_VERSION = "version"
REASON_TYPE = "type"
REASON_SCHEMA = "schema"
REASON_ORDER = "order"
REASON_RATE = "rate"
REASON_NOT_YOURS = "not_your_job"  # a report on a job not running on this node in that attempt
REASONS = (
    REASON_SIZE,
    REASON_JSON,
    REASON_VERSION,
    REASON_TYPE,
    REASON_SCHEMA,
    REASON_ORDER,
    REASON_RATE,
    REASON_NOT_YOURS,
)


class FrameRefused(ProtocolError):
    """A frame the console will not use; ``fatal`` ones end the connection."""

    def __init__(self, message: str, *, reason: str = REASON_SCHEMA, fatal: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.fatal = fatal


class _NonFinite(ValueError):
    """NaN or Infinity: Python's json writes them, JSON does not have them."""


def _no_constants(name: str):
    raise _NonFinite(f"{name} is not a number JSON allows (readings must be finite)")


def agent_frame_parse(text: str | bytes, *, now: float | None = None) -> dict:
    """One agent frame, parsed and cleaned; FrameRefused when it is not acceptable."""
    if isinstance(text, bytes | bytearray):
        if len(text) > FRAME_MAX_CHARS:
            raise FrameRefused(f"frame of {len(text)} bytes is over the {FRAME_MAX_CHARS} limit", reason=REASON_SIZE)
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FrameRefused(f"frame is not UTF-8: {exc}", reason=REASON_JSON, fatal=True) from exc
    if not isinstance(text, str):
        raise FrameRefused("empty frame", reason=REASON_JSON, fatal=True)
    if len(text) > FRAME_MAX_CHARS:
        raise FrameRefused(f"frame of {len(text)} characters is over the {FRAME_MAX_CHARS} limit", reason=REASON_SIZE)
    try:
        data = json.loads(text, parse_constant=_no_constants)
    except _NonFinite as exc:
        # A broken sensor read through Python's json, not a broken stream: refused, not fatal.
        raise FrameRefused(str(exc)) from None
    except (ValueError, RecursionError) as exc:
        raise FrameRefused(f"not JSON: {str(exc)[:200]}", reason=REASON_JSON, fatal=True) from exc
    if not isinstance(data, dict):
        raise FrameRefused("frame must be a JSON object", reason=REASON_JSON, fatal=True)
    version = data.get("v")
    if type(version) is not int or version not in protocol.SUPPORTED_VERSIONS:
        raise FrameRefused(
            f"unsupported protocol version {str(version)[:20]!r}, this console speaks "
            f"{', '.join(map(str, sorted(protocol.SUPPORTED_VERSIONS)))}",
            reason=REASON_VERSION,
            fatal=True,
        )
    kind = data.get("type")
    check = _CHECKS.get(kind) if isinstance(kind, str) else None
    if check is None:
        raise FrameRefused(f"unexpected message type {str(kind)[:40]!r}", reason=REASON_TYPE, fatal=True)
    try:
        cleaned = check(data, time.time() if now is None else now)
    except _Bad as exc:
        raise FrameRefused(f"{kind}: {exc}", fatal=kind == protocol.HELLO) from None
    return {"type": kind, "v": version, **cleaned}


class _Bad(ValueError):
    """One field is wrong (the message names it)."""


def _number(value, name: str, lo: float, hi: float, *, null: bool = False, integer: bool = False):
    # The common case first (about 100 readings per frame, 625 frames a second): a float or
    # an int already in range. NaN and infinities fail the comparison and take the long way.
    kind = type(value)
    if kind is float and not integer and lo <= value <= hi:
        return value
    if kind is int and lo <= value <= hi:
        return value if integer else float(value)
    if value is None:
        if null:
            return None
        raise _Bad(f"{name} is required")
    # bool is an int in Python; true/false is never a reading.
    if type(value) is bool or not isinstance(value, int | float):
        raise _Bad(f"{name} must be a number, got {type(value).__name__}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Bad(f"{name} must be finite")
        if integer:
            if not value.is_integer():
                raise _Bad(f"{name} must be an integer")
            value = int(value)
    if not lo <= value <= hi:
        raise _Bad(f"{name} {value:g} is outside {lo:g}..{hi:g}")
    return int(value) if integer else float(value)


def _is_control(c: str) -> bool:
    return ord(c) < 32 or 0x7F <= ord(c) < 0xA0


def _text(value, name: str, limit: int = TEXT_MAX) -> str:
    """An identity string (hostname, GPU name): bounded, printable, else refused."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Bad(f"{name} must be a string")
    if len(value) > limit:
        raise _Bad(f"{name} is longer than {limit} characters")
    if any(_is_control(c) for c in value):
        raise _Bad(f"{name} contains control characters")
    return value


def _free_text(value, name: str, limit: int) -> str:
    """A message (an error, a reason): a traceback's newlines are flattened and it is cut, not refused."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Bad(f"{name} must be a string")
    return "".join(" " if _is_control(c) else c for c in value[:limit])


def _bool(value, name: str, default: bool = False) -> bool:
    if value is None:
        return default
    if type(value) is not bool:
        raise _Bad(f"{name} must be true or false")
    return value


def _object(value, name: str, *, null: bool = True) -> dict | None:
    if value is None and null:
        return None
    if not isinstance(value, dict):
        raise _Bad(f"{name} must be an object")
    return value


def _list(value, name: str, limit: int) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Bad(f"{name} must be a list")
    if len(value) > limit:
        raise _Bad(f"{name} has {len(value)} entries, at most {limit} are allowed")
    return value


MB_MAX = 4 * 1024 * 1024  # 4 TiB in MiB: above any GPU's or host's memory
COUNT_MAX = 2**53  # exact as a float (Prometheus) and within BIGINT
# (key, lower, upper, nullable, integer, default) for each GPU reading of a sample.
_GPU_SCHEMA = (
    ("utilization", 0, 100, False, False, 0.0),
    ("memory_utilization", 0, 100, False, False, 0.0),
    ("vram_used_mb", 0, MB_MAX, False, False, 0.0),
    ("vram_total_mb", 0, MB_MAX, False, False, 0.0),
    ("temperature_c", -40, 150, True, False, None),
    ("power_w", 0, 5000, True, False, None),
    ("power_limit_w", 0, 5000, True, False, None),
    ("sm_clock_mhz", 0, 10000, True, False, None),
    ("throttle_reasons", 0, 2**63 - 1, False, True, 0),
    ("ecc_errors", 0, COUNT_MAX, False, True, 0),
    ("xid_errors", 0, COUNT_MAX, False, True, 0),
    ("last_xid", 0, 2**31 - 1, True, True, None),
)
_NODE_SCHEMA = (
    ("jobs_running", 0, 1_000_000, False, True, 0),
    ("jobs_queued", 0, 1_000_000, False, True, 0),
    ("success_rate_5m", 0, 1, True, False, None),
    ("success_rate_1h", 0, 1, True, False, None),
    ("jobs_5m", 0, 100_000_000, True, True, None),
    ("jobs_1h", 0, 100_000_000, True, True, None),
    ("latency_p50_s", 0, 86_400, True, False, None),
    ("latency_p95_s", 0, 86_400, True, False, None),
    ("rtf_mean", 0, 1000, True, False, None),
)
_HOST_SCHEMA = (
    ("cpu_percent", 0, 100, False, False, 0.0),
    ("ram_used_mb", 0, MB_MAX, False, False, 0.0),
    ("ram_total_mb", 0, MB_MAX, False, False, 0.0),
)


def _fields(raw: dict, schema, prefix: str) -> dict:
    out = {}
    for key, lo, hi, null, integer, default in schema:
        value = raw.get(key)
        if value is None and default is not None:
            out[key] = default
        else:
            out[key] = _number(value, f"{prefix}{key}", lo, hi, null=null, integer=integer)
    return out


def _gpu_index(value, name: str) -> int:
    return _number(value, name, 0, GPUS_MAX - 1, integer=True)


def _gpu_reading(raw, position: int) -> dict:
    raw = _object(raw, f"gpus[{position}]", null=False)
    index = _gpu_index(raw.get("index"), f"gpus[{position}].index")
    reading = {"index": index, **_fields(raw, _GPU_SCHEMA, f"gpus[{index}].")}
    for i, proc in enumerate(_list(raw.get("processes"), f"gpus[{index}].processes", PROCESSES_MAX)):
        proc = _object(proc, f"gpus[{index}].processes[{i}]", null=False)
        _number(proc.get("pid"), f"gpus[{index}].processes[{i}].pid", 0, 2**32, integer=True)
        _number(proc.get("vram_used_mb"), f"gpus[{index}].processes[{i}].vram_used_mb", 0, MB_MAX, null=True)
    return reading


def _unique_indexes(gpus: list[dict]) -> None:
    seen = set()
    for gpu in gpus:
        if gpu["index"] in seen:
            raise _Bad(f"GPU index {gpu['index']} appears twice")
        seen.add(gpu["index"])


def _sample(data: dict, now: float) -> dict:
    ts = _number(data.get("ts"), "ts", 0, 2**40)
    if ts < now - SAMPLE_MAX_AGE_S or ts > now + SAMPLE_MAX_AHEAD_S:
        raise _Bad(
            f"ts is {ts - now:+.0f} s from the console's clock (allowed {-SAMPLE_MAX_AGE_S}..+{SAMPLE_MAX_AHEAD_S} s); "
            "check the host's clock (NTP)"
        )
    gpus = [_gpu_reading(g, i) for i, g in enumerate(_list(data.get("gpus"), "gpus", GPUS_MAX))]
    _unique_indexes(gpus)
    host = _object(data.get("host"), "host")
    node = _object(data.get("node"), "node") or {}
    stats = _fields(node, _NODE_SCHEMA, "node.")
    stats["draining"] = _bool(node.get("draining"), "node.draining")
    stats["jobs_total"] = _outcome_counts(node.get("jobs_total"))
    stats["job_seconds"] = _histogram(node.get("job_seconds"), "node.job_seconds", protocol.JOB_SECONDS_BUCKETS)
    stats["job_rtf"] = _histogram(node.get("job_rtf"), "node.job_rtf", protocol.JOB_RTF_BUCKETS)
    return {
        "seq": _number(data.get("seq", 0), "seq", 0, COUNT_MAX, integer=True),
        "ts": ts,
        "gpus": gpus,
        "host": _fields(host, _HOST_SCHEMA, "host.") if host is not None else None,
        "node": stats,
    }


OUTCOMES_MAX = 8


def _outcome_counts(raw) -> dict | None:
    raw = _object(raw, "node.jobs_total")
    if raw is None:
        return None
    if len(raw) > OUTCOMES_MAX:
        raise _Bad(f"node.jobs_total has more than {OUTCOMES_MAX} outcomes")
    out = {}
    for key, value in raw.items():
        # Label values in /metrics: a short word, never free text.
        if not (isinstance(key, str) and 0 < len(key) <= 20 and key.replace("_", "").isalpha() and key.isascii()):
            raise _Bad("node.jobs_total outcomes must be short lowercase words")
        out[key.lower()] = _number(value, f"node.jobs_total.{key}", 0, COUNT_MAX, integer=True)
    return out


def _histogram(raw, name: str, edges: tuple[float, ...]) -> dict | None:
    raw = _object(raw, name)
    if raw is None:
        return None
    buckets = _list(raw.get("buckets"), f"{name}.buckets", len(edges))
    if len(buckets) != len(edges):
        raise _Bad(f"{name}.buckets must have {len(edges)} counts, one per edge")
    counts = [_number(b, f"{name}.buckets[{i}]", 0, COUNT_MAX, integer=True) for i, b in enumerate(buckets)]
    count = _number(raw.get("count"), f"{name}.count", 0, COUNT_MAX, integer=True)
    if any(a > b for a, b in zip(counts, counts[1:], strict=False)) or (counts and counts[-1] > count):
        raise _Bad(f"{name}: bucket counts must be cumulative and at most count")
    return {"buckets": counts, "sum": _number(raw.get("sum"), f"{name}.sum", 0, 1e15), "count": count}


def _hello(data: dict, now: float) -> dict:
    gpus = []
    for i, raw in enumerate(_list(data.get("gpus"), "gpus", GPUS_MAX)):
        raw = _object(raw, f"gpus[{i}]", null=False)
        index = raw.get("index", i)
        gpus.append(
            {
                "index": _gpu_index(index, f"gpus[{i}].index"),
                "name": _text(raw.get("name"), f"gpus[{i}].name", 96),
                "uuid": _text(raw.get("uuid"), f"gpus[{i}].uuid", 96),
                "vram_total_mb": _number(raw.get("vram_total_mb"), f"gpus[{i}].vram_total_mb", 0, MB_MAX, null=True),
            }
        )
    _unique_indexes(gpus)
    return {
        "node": _text(data.get("node"), "node", 64),
        "hostname": _text(data.get("hostname"), "hostname"),
        "agent_version": _text(data.get("agent_version"), "agent_version", 32),
        "engine": _text(data.get("engine"), "engine", 64),
        "nvml": _bool(data.get("nvml"), "nvml"),
        "nvml_reason": _free_text(data.get("nvml_reason"), "nvml_reason", 500),
        "gpu_model": _text(data.get("gpu_model"), "gpu_model", 64),
        "gpus": gpus,
        "draining": _bool(data.get("draining"), "draining"),
        "jobs": _jobs_held(data.get("jobs"), attempts=data["v"] >= protocol.JOB_FRAMES_FROM),
    }


# Jobs an agent says it still holds in its hello (fleetagent.protocol); absent from older agents.
JOBS_HELD_MAX = 1_000
JOB_ID_MAX = 2**63 - 1  # BIGINT, and the audio header's u64
ATTEMPT_MAX = 32_767  # SynthesisJob.attempts is a PositiveSmallIntegerField


def _job_id(value, name: str) -> int:
    return _number(value, name, 1, JOB_ID_MAX, integer=True)


def _attempt(value, name: str) -> int:
    return _number(value, name, 1, ATTEMPT_MAX, integer=True)


def _job_attempts(raw, name: str) -> list[list[int]]:
    """[[job_id, attempt], ...] (protocol v3)."""
    pairs = []
    for i, pair in enumerate(_list(raw, name, JOBS_HELD_MAX)):
        if not isinstance(pair, list) or len(pair) != 2:
            raise _Bad(f"{name}[{i}] must be a [job_id, attempt] pair")
        pairs.append([_job_id(pair[0], f"{name}[{i}][0]"), _attempt(pair[1], f"{name}[{i}][1]")])
    return pairs


def _jobs_held(raw, *, attempts: bool) -> list | None:
    if raw is None:
        return None  # an agent that does not say: the console moves nothing on its hello
    if attempts:
        return _job_attempts(raw, "jobs")
    return [_job_id(job, f"jobs[{i}]") for i, job in enumerate(_list(raw, "jobs", JOBS_HELD_MAX))]


DETAIL_KEYS_MAX = 32


def _detail_value(value, name: str, depth: int):
    if value is None or type(value) is bool:
        return value
    if isinstance(value, int | float):
        return _number(value, name, -COUNT_MAX, COUNT_MAX, integer=isinstance(value, int))
    if isinstance(value, str):
        return _free_text(value, name, 500)
    if isinstance(value, dict) and depth < 2:
        return _detail(value, name, depth + 1)
    if isinstance(value, list) and depth < 2:
        return [_detail_value(v, f"{name}[]", 2) for v in _list(value, name, DETAIL_KEYS_MAX)]
    raise _Bad(f"{name} must be a number, string, boolean, null, or a small object or list of them")


def _detail(raw: dict, name: str, depth: int = 0) -> dict:
    if len(raw) > DETAIL_KEYS_MAX:
        raise _Bad(f"{name} has more than {DETAIL_KEYS_MAX} keys")
    return {_text(k, f"{name} key", 64): _detail_value(v, f"{name}.{k}"[:80], depth) for k, v in raw.items()}


def _ack(data: dict, now: float) -> dict:
    action = data.get("action")
    if action not in protocol.ACTIONS:
        raise _Bad(f"unknown action {str(action)[:20]!r}")
    return {
        "command_id": _number(data.get("command_id"), "command_id", 1, 2**63 - 1, integer=True),
        "action": action,
        "ok": _bool(data.get("ok"), "ok"),
        "detail": _detail(_object(data.get("detail"), "detail") or {}, "detail"),
        "error": _free_text(data.get("error"), "error", 500),
    }


def _bye(data: dict, now: float) -> dict:
    return {"reason": _free_text(data.get("reason"), "reason", 200)}


# --- job frames (protocol v3: a host that runs jobs with no database) ----------------------------
JOB_SECONDS_MAX = 86_400.0
# 64 MiB of 16-bit PCM (about 23 minutes at 24 kHz): far above any job, and what the console
# buffers for one job at most (console.consumers.agents).
JOB_AUDIO_MAX_BYTES = 64 * 1024 * 1024
ERROR_CODE_MAX = 64


def _job_frame(data: dict) -> dict:
    if data["v"] < protocol.JOB_FRAMES_FROM:
        raise _Bad(f"job frames need protocol {protocol.JOB_FRAMES_FROM} or later")
    return {"job_id": _job_id(data.get("job_id"), "job_id"), "attempt": _attempt(data.get("attempt"), "attempt")}


def _job_start(data: dict, now: float) -> dict:
    return _job_frame(data)


def _job_renew(data: dict, now: float) -> dict:
    if data["v"] < protocol.JOB_FRAMES_FROM:
        raise _Bad(f"job frames need protocol {protocol.JOB_FRAMES_FROM} or later")
    return {"jobs": _job_attempts(data.get("jobs"), "jobs")}


def _job_done(data: dict, now: float) -> dict:
    return {
        **_job_frame(data),
        "audio_bytes": _number(data.get("audio_bytes"), "audio_bytes", 0, JOB_AUDIO_MAX_BYTES, integer=True),
        "gpu_seconds": _number(data.get("gpu_seconds", 0.0), "gpu_seconds", 0, JOB_SECONDS_MAX),
        "audio_seconds": _number(data.get("audio_seconds", 0.0), "audio_seconds", 0, JOB_SECONDS_MAX),
        "engine_version": _text(data.get("engine_version"), "engine_version", 64),
    }


def _job_fail(data: dict, now: float) -> dict:
    code = data.get("code")
    # Stored as the job's error_code and shown to the customer: a short identifier, never free text.
    if not (
        isinstance(code, str)
        and 0 < len(code) <= ERROR_CODE_MAX
        and code.isascii()
        and code.replace("_", "").replace("-", "").isalnum()
    ):
        raise _Bad(f"code must be a short identifier (letters, digits, _ and -, at most {ERROR_CODE_MAX})")
    return {**_job_frame(data), "code": code, "message": _free_text(data.get("message"), "message", 500)}


_CHECKS = {
    protocol.HELLO: _hello,
    protocol.SAMPLE: _sample,
    protocol.ACK: _ack,
    protocol.BYE: _bye,
    protocol.JOB_START: _job_start,
    protocol.JOB_RENEW: _job_renew,
    protocol.JOB_DONE: _job_done,
    protocol.JOB_FAIL: _job_fail,
}
JOB_FRAME_TYPES = frozenset({protocol.JOB_START, protocol.JOB_RENEW, protocol.JOB_DONE, protocol.JOB_FAIL})


class AudioFrame(NamedTuple):
    """One binary audio frame of a job attempt (protocol v3), its header checked."""

    job_id: int
    attempt: int
    sample_rate: int
    offset: int
    pcm: bytes


def audio_frame_parse(data: bytes) -> AudioFrame:
    """A binary frame as an AudioFrame; FrameRefused (not fatal) when it is malformed."""
    try:
        frame = AudioFrame(*protocol.audio_frame_decode(data))
    except ProtocolError as exc:
        reason = REASON_SIZE if len(data) > protocol.AUDIO_FRAME_MAX else REASON_SCHEMA
        raise FrameRefused(f"audio: {exc}", reason=reason) from None
    try:
        _job_id(frame.job_id, "job_id")
        _attempt(frame.attempt, "attempt")
    except _Bad as exc:
        raise FrameRefused(f"audio: {exc}") from None
    if frame.offset + len(frame.pcm) > JOB_AUDIO_MAX_BYTES:
        raise FrameRefused(f"audio: a job's audio is at most {JOB_AUDIO_MAX_BYTES} bytes", reason=REASON_SIZE)
    return frame


class FrameRate:
    """Token bucket per connection: a burst (an agent's buffer after an outage), then a steady rate."""

    def __init__(self, *, per_s: float, burst: int, clock=time.monotonic) -> None:
        self.per_s = per_s
        self.burst = burst
        self.tokens = float(burst)
        self._clock = clock
        self._at = clock()

    def take(self, cost: float = 1) -> bool:
        """Spend ``cost`` (one frame, or a binary frame's bytes) if the bucket holds it."""
        now = self._clock()
        self.tokens = min(self.burst, self.tokens + (now - self._at) * self.per_s)
        self._at = now
        if self.tokens < cost:
            return False
        self.tokens -= cost
        return True

    def refund(self, cost: float = 1) -> None:
        """Give back what a frame took once it turned out to be counted elsewhere."""
        self.tokens = min(self.burst, self.tokens + cost)
