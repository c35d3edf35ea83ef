"""Speech that streams, in OpenAI's formats and voices, through the official ``openai`` client.

Against a live server (the embedded default, or uvicorn + a Celery node worker with REDIS_URL).
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import time

import av
import httpx
import pytest

from billing.metering import count_tokens
from tests.support.live_clients import client, remaining, rest

MODEL = "cosyvoice-3"
# Five English sentences for Piper (onyx -> en-male): long enough that synthesis is still
# running when the first sentence's audio reaches the client.
LONG_TEXT = (
    "The first sentence arrives early. The second one follows it closely. "
    "A third sentence keeps the engine busy. The fourth is nearly the end. This is the last one."
)


def decoded_seconds(data: bytes) -> tuple[float, int]:
    with av.open(io.BytesIO(data)) as container:
        frames = list(container.decode(audio=0))
    samples = sum(frame.samples for frame in frames)
    return samples / frames[0].sample_rate, frames[0].sample_rate


def job_of(live, key, response) -> dict:
    return rest(live, key, "GET", f"jobs/{response.headers['x-job-id']}").json()


def wait_finished(live, key, job_id, timeout_s=60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        job = rest(live, key, "GET", f"jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def test_default_call_with_an_openai_voice_returns_mp3_that_decodes(live):
    key = live.key("pro")
    raw = client(live, key).audio.speech.with_raw_response.create(
        model="tts-1", voice="alloy", input="Hello from Voxfleet."
    )
    assert raw.headers["content-type"] == "audio/mpeg"
    assert raw.headers["x-request-id"].startswith("req_")
    seconds, rate = decoded_seconds(raw.content)
    assert rate == 24_000 and 0.8 < seconds < 6.0
    job = job_of(live, key, raw)
    assert job["voice"]["id"] == "en-female" and job["status"] == "succeeded"  # alloy's preset
    assert seconds == pytest.approx(job["audio_seconds"], abs=0.1)


@pytest.mark.parametrize("voice", ["ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer"])
def test_every_openai_voice_name_speaks(live, voice):
    response = client(live, live.key("pro")).audio.speech.with_raw_response.create(
        model=MODEL, voice=voice, input="OK.", response_format="wav"
    )
    assert response.headers["content-type"] == "audio/wav"


def test_streaming_response_gets_audio_before_synthesis_ends(live):
    key = live.key("pro")
    api = client(live, key)
    with api.audio.speech.with_streaming_response.create(
        model=MODEL, voice="onyx", input=LONG_TEXT, response_format="mp3"
    ) as response:
        assert response.headers.get("content-length") is None  # chunked: the length is not known yet
        chunks = response.iter_bytes()
        first = next(chunks)
        first_at = dt.datetime.now(dt.UTC)
        body = first + b"".join(chunks)
    job = job_of(live, key, response)
    assert job["status"] == "succeeded"
    assert first_at < dt.datetime.fromisoformat(job["finished_at"]), "the first audio came only after synthesis"
    seconds, _ = decoded_seconds(body)
    assert seconds == pytest.approx(job["audio_seconds"], abs=0.1)
    assert int(response.headers["x-tokens-charged"]) == count_tokens(LONG_TEXT) == job["tokens"]


def test_streamed_and_whole_responses_carry_the_same_audio(live):
    key = live.key("pro")
    fields = {"model": MODEL, "voice": "zh-female", "input": "第一句话。第二句话。", "response_format": "flac"}
    streamed = client(live, key).audio.speech.with_raw_response.create(**fields, extra_body={"seed": 77})
    whole = client(live, key).audio.speech.with_raw_response.create(**fields, extra_body={"seed": 77, "stream": False})
    assert whole.headers["content-length"] == str(len(whole.content))
    assert streamed.content == whole.content


def test_sse_events_parse_and_carry_usage(live):
    key = live.key("pro")
    text = "流式事件。第二句。"
    deltas, done = [], None
    with client(live, key).audio.speech.with_streaming_response.create(
        model=MODEL, voice="zh-female", input=text, stream_format="sse", extra_body={"seed": 5}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line.removeprefix("data: "))
            if event["type"] == "speech.audio.delta":
                deltas.append(base64.b64decode(event["audio"]))
            elif event["type"] == "speech.audio.done":
                done = event
    assert deltas and done is not None
    assert done["usage"]["input_tokens"] == count_tokens(text) == done["usage"]["total_tokens"]
    plain = client(live, key).audio.speech.with_raw_response.create(
        model=MODEL, voice="zh-female", input=text, extra_body={"seed": 5}
    )
    assert b"".join(deltas) == plain.content  # the same mp3, cut into events


def test_pcm_is_24_khz_16_bit_little_endian(live):
    key = live.key("pro")
    fields = {"model": MODEL, "voice": "zh-male", "input": "采样率测试。", "extra_body": {"seed": 9}}
    pcm = client(live, key).audio.speech.with_raw_response.create(**fields, response_format="pcm")
    assert pcm.headers["content-type"] == "audio/pcm" and pcm.headers["x-sample-rate"] == "24000"
    job = job_of(live, key, pcm)
    assert len(pcm.content) % 2 == 0
    assert len(pcm.content) / 2 / 24_000 == pytest.approx(job["audio_seconds"], abs=0.01)


@pytest.mark.parametrize("speed", [0.25, 4.0])
def test_speed_has_openais_meaning(live, speed):
    key = live.key("pro")
    fields = {
        "model": MODEL,
        "voice": "zh-female",
        "input": "今天天气很好，我们一起去公园散步吧。",
        "response_format": "wav",
    }
    normal = job_of(live, key, client(live, key).audio.speech.with_raw_response.create(**fields))
    changed = job_of(live, key, client(live, key).audio.speech.with_raw_response.create(**fields, speed=speed))
    assert changed["audio_seconds"] == pytest.approx(normal["audio_seconds"] / speed, rel=0.15)


def test_a_client_that_disconnects_mid_stream_leaves_nothing_reserved(live):
    key = live.key("pro")
    before = remaining(live, key)
    body = {"model": MODEL, "voice": "onyx", "input": LONG_TEXT, "speed": 0.5}
    with httpx.stream(
        "POST", f"{live.url}/v1/audio/speech", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as response:
        assert response.status_code == 200
        next(response.iter_raw())  # the first sentence, then hang up
        job_id = response.headers["x-job-id"]
    job = wait_finished(live, key, job_id)
    assert job["status"] == "cancelled" and "disconnected" in job["error"]["message"]
    deadline = time.monotonic() + 30
    while remaining(live, key) != before:
        assert time.monotonic() < deadline, "the reservation was not released"
        time.sleep(0.05)


def test_jobs_api_streams_a_running_jobs_audio_and_downloads_every_format(live):
    key = live.key("pro")
    created = rest(live, key, "POST", "jobs", json={"input": LONG_TEXT, "voice": "onyx", "seed": 3}).json()
    streamed = rest(live, key, "GET", f"jobs/{created['id']}/audio", params={"format": "mp3"})
    assert streamed.status_code == 200 and streamed.headers["content-type"] == "audio/mpeg"
    job = wait_finished(live, key, created["id"])
    assert job["status"] == "succeeded"
    assert decoded_seconds(streamed.content)[0] == pytest.approx(job["audio_seconds"], abs=0.1)
    downloaded = rest(live, key, "GET", f"jobs/{created['id']}/audio", params={"format": "mp3"})
    assert downloaded.content == streamed.content
    for fmt, content_type in (
        ("opus", "audio/ogg"),
        ("aac", "audio/aac"),
        ("flac", "audio/flac"),
        ("wav", "audio/wav"),
    ):
        response = rest(live, key, "GET", f"jobs/{created['id']}/audio", params={"format": fmt})
        assert response.status_code == 200 and response.headers["content-type"] == content_type
        assert decoded_seconds(response.content)[0] == pytest.approx(job["audio_seconds"], abs=0.1)
    bad = rest(live, key, "GET", f"jobs/{created['id']}/audio", params={"format": "ogg"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_format"


def test_every_response_has_a_request_id(live):
    models = httpx.get(f"{live.url}/v1/models", headers={"Authorization": f"Bearer {live.key('pro')}"})
    refused = httpx.post(f"{live.url}/v1/audio/speech", json={})
    kept = httpx.get(f"{live.url}/healthz", headers={"X-Request-Id": "trace-123"})
    assert models.headers["x-request-id"].startswith("req_")
    assert refused.status_code == 401 and refused.headers["x-request-id"].startswith("req_")
    assert kept.headers["x-request-id"] == "trace-123"
