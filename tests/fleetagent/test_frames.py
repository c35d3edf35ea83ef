"""The agent-frame schema: what a node may send, and that nothing else gets through."""

from __future__ import annotations

import json
import math
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetagent import frames, protocol
from fleetagent.frames import FrameRefused, agent_frame_parse

NOW = 1_800_000_000.0


def gpu(index=0, **extra):
    reading = {
        "index": index,
        "utilization": 55.0,
        "memory_utilization": 20.0,
        "vram_used_mb": 6100.0,
        "vram_total_mb": 23028.0,
        "temperature_c": 66.0,
        "power_w": 120.0,
        "power_limit_w": 150.0,
        "sm_clock_mhz": 1695.0,
        "throttle_reasons": 0,
        "ecc_errors": 0,
        "xid_errors": 0,
        "processes": [{"pid": 42, "vram_used_mb": 6000.0}],
    }
    reading.update(extra)
    return reading


def sample_frame(*, gpus=None, version=protocol.PROTOCOL_VERSION, **fields) -> str:
    frame = {
        "type": "sample",
        "v": version,
        "seq": 1,
        "ts": NOW,
        "gpus": [gpu(0)] if gpus is None else gpus,
        "host": {"cpu_percent": 10.0, "ram_used_mb": 1000.0, "ram_total_mb": 16000.0},
        "node": {"jobs_running": 1, "jobs_queued": 0, "success_rate_5m": 1.0, "draining": False},
    }
    frame.update(fields)
    return json.dumps(frame)


def parse(text):
    return agent_frame_parse(text, now=NOW)


def test_a_good_sample_is_cleaned_to_the_documented_keys():
    text = sample_frame(gpus=[gpu(0, surprise="x"), gpu(1)], extra_top="dropped")
    frame = parse(text)
    assert frame["type"] == "sample" and frame["v"] == protocol.PROTOCOL_VERSION and frame["ts"] == NOW
    assert [g["index"] for g in frame["gpus"]] == [0, 1]
    assert "surprise" not in frame["gpus"][0] and "extra_top" not in frame and "processes" not in frame["gpus"][0]
    assert frame["node"]["jobs_running"] == 1 and frame["node"]["draining"] is False
    assert frame["node"]["rtf_mean"] is None


def test_protocol_v1_frames_are_still_accepted():
    assert parse(sample_frame(version=1))["v"] == 1


@pytest.mark.parametrize(
    "text, fragment",
    [
        (sample_frame(ts=1e20), "ts"),
        (sample_frame(ts="yesterday"), "ts must be a number"),
        (sample_frame(ts=NOW - 7200), "check the host's clock"),
        (sample_frame(gpus=[gpu(0, utilization="n/a")]), "utilization must be a number"),
        (sample_frame(gpus=[gpu(0, utilization=101)]), "outside 0..100"),
        (sample_frame(gpus=[gpu(0, temperature_c=True)]), "temperature_c must be a number"),
        (sample_frame(gpus=[gpu('<img src=x onerror="alert(1)">')]), "index must be a number"),
        (sample_frame(gpus=[gpu(16)]), "outside 0..15"),
        (sample_frame(gpus=[gpu(0), gpu(0)]), "appears twice"),
        (sample_frame(gpus=[gpu(i % 16) for i in range(17)]), "at most 16"),
        (sample_frame(node={"rtf_mean": "n/a"}), "rtf_mean must be a number"),
        (sample_frame(node={"jobs_running": -1}), "outside"),
        (sample_frame(node={"jobs_running": 1.5}), "must be an integer"),
        (sample_frame(gpus=[gpu(0, ecc_errors=2**64)]), "outside"),
        (sample_frame(host={"cpu_percent": 1.25}).replace("1.25", "1e999"), "finite"),
        (sample_frame(gpus="all of them"), "gpus must be a list"),
    ],
)
def test_bad_samples_are_refused_with_a_message_that_names_the_field(text, fragment):
    with pytest.raises(FrameRefused) as exc:
        parse(text)
    assert fragment in exc.value.message and exc.value.reason == frames.REASON_SCHEMA
    assert not exc.value.fatal  # a bad sample is refused; the socket stays up


def test_nan_and_infinity_literals_are_refused():
    text = sample_frame().replace('"utilization": 55.0', '"utilization": NaN')
    with pytest.raises(FrameRefused) as exc:
        parse(text)
    assert exc.value.reason == frames.REASON_SCHEMA and "NaN" in exc.value.message and not exc.value.fatal
    with pytest.raises(FrameRefused):
        parse(sample_frame().replace('"power_w": 120.0', '"power_w": -Infinity'))


def test_a_huge_frame_is_refused_before_it_is_parsed():
    # The 0.9 MB frame with 50,000 GPUs.
    text = sample_frame(gpus=[{"index": i} for i in range(50_000)])
    assert len(text) > 500_000
    with pytest.raises(FrameRefused) as exc:
        parse(text)
    assert exc.value.reason == frames.REASON_SIZE


@pytest.mark.parametrize(
    "text, reason",
    [
        ("not json", frames.REASON_JSON),
        ("[1, 2]", frames.REASON_JSON),
        ('{"type": "sample", "v": 99}', frames.REASON_VERSION),
        ('{"type": "sample", "v": true}', frames.REASON_VERSION),
        ('{"type": "welcome", "v": 2}', frames.REASON_TYPE),
        ("[" * 5000 + "]" * 5000, frames.REASON_JSON),
        (b"\xff\xfe", frames.REASON_JSON),
    ],
)
def test_frames_that_are_not_protocol_close_the_socket(text, reason):
    with pytest.raises(FrameRefused) as exc:
        parse(text)
    assert exc.value.reason == reason and exc.value.fatal


def test_hello_strings_are_kept_as_text_but_bounded():
    hostile = "<img src=x onerror=\"fetch('/ops/api/nodes/x/actions/',{method:'POST'})\">"
    hello = {"type": "hello", "v": 2, "hostname": hostile, "gpu_model": hostile[:64], "gpus": [{"index": 0}]}
    frame = parse(json.dumps(hello))
    assert frame["hostname"] == hostile  # shown as text by the dashboards, never as HTML
    with pytest.raises(FrameRefused) as exc:
        parse(json.dumps({**hello, "hostname": "x" * 300}))
    assert exc.value.fatal  # a hello that cannot be used ends the connection
    with pytest.raises(FrameRefused):
        parse(json.dumps({**hello, "hostname": "line\nbreak"}))
    with pytest.raises(FrameRefused):
        parse(json.dumps({**hello, "gpus": [{"index": i} for i in range(17)]}))


def test_ack_detail_is_bounded_and_free_text_is_flattened():
    ack = {"type": "ack", "v": 1, "command_id": 7, "action": "restart", "ok": False, "error": "Traceback\n  boom"}
    frame = parse(json.dumps({**ack, "detail": {"engine": {"languages": ["zh", "en"]}, "vram_after_mb": 1.5}}))
    assert frame["error"] == "Traceback   boom" and frame["detail"]["engine"]["languages"] == ["zh", "en"]
    with pytest.raises(FrameRefused):
        parse(json.dumps({**ack, "command_id": "7"}))
    with pytest.raises(FrameRefused):
        parse(json.dumps({**ack, "action": "format-disk"}))
    with pytest.raises(FrameRefused):
        parse(json.dumps({**ack, "detail": {f"k{i}": i for i in range(100)}}))


def test_frame_rate_allows_a_burst_then_the_steady_rate():
    clock = [0.0]
    rate = frames.FrameRate(per_s=2, burst=3, clock=lambda: clock[0])
    assert [rate.take() for _ in range(4)] == [True, True, True, False]
    clock[0] += 1.0
    assert [rate.take() for _ in range(3)] == [True, True, False]


# --- generated frames ---------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["<script>alert(1)</script>", "n/a", "1e20", "NaN", ""]),
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
)
field_names = st.sampled_from([*protocol.GPU_FIELDS, *protocol.NODE_FIELDS, "processes", "ts", "seq", "host"])


@st.composite
def hostile_samples(draw):
    """Mostly-valid samples with some fields replaced by anything JSON can carry."""
    reading = gpu(draw(st.integers(min_value=-2, max_value=20)))
    for key in draw(st.lists(field_names, max_size=4)):
        reading[key] = draw(json_values)
    frame = json.loads(sample_frame(gpus=[reading]))
    for key in draw(st.lists(st.sampled_from(["ts", "seq", "gpus", "host", "node", "v"]), max_size=2)):
        frame[key] = draw(json_values)
    node = frame.get("node")
    if isinstance(node, dict):
        for key in draw(st.lists(st.sampled_from(protocol.NODE_FIELDS), max_size=3)):
            node[key] = draw(json_values)
    return json.dumps(frame, allow_nan=True)


def _all_finite(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_all_finite(v) for v in value)
    return value is None or isinstance(value, bool | int | str)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(text=hostile_samples())
def test_generated_samples_are_refused_or_come_out_clean(text):
    try:
        frame = parse(text)
    except FrameRefused as exc:
        assert exc.reason in frames.REASONS and exc.message
        return
    # What gets through is exactly the documented shape: storable, renderable, finite.
    assert _all_finite(frame)
    assert NOW - frames.SAMPLE_MAX_AGE_S <= frame["ts"] <= NOW + frames.SAMPLE_MAX_AHEAD_S
    for reading in frame["gpus"]:
        assert set(reading) == set(protocol.GPU_FIELDS)
        assert 0 <= reading["index"] < frames.GPUS_MAX and 0 <= reading["utilization"] <= 100
        assert all(isinstance(reading[k], int) for k in ("throttle_reasons", "ecc_errors", "xid_errors"))
    assert set(frame["node"]) == {*protocol.NODE_FIELDS}


@settings(max_examples=100, deadline=None)
@given(data=json_values)
def test_any_json_at_all_is_refused_or_clean(data):
    try:
        frame = agent_frame_parse(json.dumps(data, allow_nan=True), now=time.time())
    except FrameRefused:
        return
    assert _all_finite(frame)


# --- protocol v3: job frames and binary audio frames ------------------------------------------------
def job_frame(kind: str, **fields) -> str:
    return protocol.message_encode(kind, version=protocol.JOB_FRAMES_FROM, **fields)


def test_v3_job_frames_are_cleaned_to_their_documented_keys():
    assert parse(job_frame(protocol.JOB_START, job_id=7, attempt=1, extra="dropped")) == {
        "type": protocol.JOB_START,
        "v": 3,
        "job_id": 7,
        "attempt": 1,
    }
    done = parse(
        job_frame(protocol.JOB_DONE, job_id=7, attempt=2, audio_bytes=4800, gpu_seconds=1, engine_version="cv3")
    )
    assert (done["audio_bytes"], done["gpu_seconds"], done["audio_seconds"], done["engine_version"]) == (
        4800,
        1.0,
        0.0,
        "cv3",
    )
    fail = parse(job_frame(protocol.JOB_FAIL, job_id=7, attempt=1, code="cuda-oom_2", message="a\nb"))
    assert (fail["code"], fail["message"]) == ("cuda-oom_2", "a b")
    assert parse(job_frame(protocol.JOB_RENEW, jobs=[[7, 1], [8, 2]]))["jobs"] == [[7, 1], [8, 2]]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (job_frame(protocol.JOB_START, job_id=7, attempt=0), "attempt"),
        (job_frame(protocol.JOB_START, job_id=True, attempt=1), "job_id"),
        (job_frame(protocol.JOB_START, job_id=2**64, attempt=1), "job_id"),
        (job_frame(protocol.JOB_START, job_id=7, attempt=40_000), "attempt"),
        (job_frame(protocol.JOB_DONE, job_id=7, attempt=1, audio_bytes=-1), "audio_bytes"),
        (job_frame(protocol.JOB_DONE, job_id=7, attempt=1, audio_bytes=2, gpu_seconds=1e9), "gpu_seconds"),
        (job_frame(protocol.JOB_FAIL, job_id=7, attempt=1, code="<script>", message=""), "code"),
        (job_frame(protocol.JOB_FAIL, job_id=7, attempt=1, code="", message=""), "code"),
        (job_frame(protocol.JOB_RENEW, jobs=[[7]]), "pair"),
        (job_frame(protocol.JOB_RENEW, jobs=[[7, 1]] * (frames.JOBS_HELD_MAX + 1)), "at most"),
        (protocol.message_encode(protocol.JOB_START, version=2, job_id=7, attempt=1), "protocol 3"),
    ],
)
def test_bad_job_frames_are_refused_not_fatally(text, fragment):
    with pytest.raises(FrameRefused) as refused:
        parse(text)
    assert fragment in refused.value.message and not refused.value.fatal


def test_a_v3_hello_holds_job_attempt_pairs_and_a_v2_hello_job_ids():
    v3 = json.loads(protocol.message_encode(protocol.HELLO, version=3, jobs=[[5, 1]]))
    v2 = json.loads(protocol.message_encode(protocol.HELLO, version=2, jobs=[5]))
    assert parse(json.dumps(v3))["jobs"] == [[5, 1]] and parse(json.dumps(v2))["jobs"] == [5]
    with pytest.raises(FrameRefused):
        parse(json.dumps({**v3, "jobs": [5]}))  # v3 holds pairs


def test_audio_frames_are_checked_before_any_byte_is_used():
    pcm = b"\x00\x01" * 100
    frame = frames.audio_frame_parse(
        protocol.audio_frame_encode(job_id=7, attempt=2, sample_rate=24_000, offset=200, pcm=pcm)
    )
    assert frame == frames.AudioFrame(job_id=7, attempt=2, sample_rate=24_000, offset=200, pcm=pcm)
    for bad in (
        b"VXA3",
        protocol.audio_frame_encode(job_id=7, attempt=1, sample_rate=24_000, offset=0, pcm=b"\x00"),
        protocol.audio_frame_encode(job_id=7, attempt=1, sample_rate=4_000, offset=0, pcm=pcm),
        protocol.audio_frame_encode(job_id=0, attempt=1, sample_rate=24_000, offset=0, pcm=pcm),
        protocol.audio_frame_encode(job_id=7, attempt=0, sample_rate=24_000, offset=0, pcm=pcm),
        protocol.audio_frame_encode(
            job_id=7, attempt=1, sample_rate=24_000, offset=frames.JOB_AUDIO_MAX_BYTES - 100, pcm=pcm
        ),
        b"XXXX" + protocol.audio_frame_encode(job_id=7, attempt=1, sample_rate=24_000, offset=0, pcm=pcm)[4:],
    ):
        with pytest.raises(FrameRefused) as refused:
            frames.audio_frame_parse(bad)
        assert not refused.value.fatal
