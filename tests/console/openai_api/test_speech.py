"""The OpenAI-compatible speech API, driven by the official ``openai`` client against a live server."""

from __future__ import annotations

import io
import wave

import httpx
import numpy
import openai
import pytest

from billing.metering import count_tokens
from tests.support.live_clients import client, remaining, rest

MODEL = "cosyvoice-3"


def speak(live, key: str, **fields):
    fields.setdefault("model", MODEL)
    fields.setdefault("voice", "zh-female")
    extra = {k: fields.pop(k) for k in ("seed",) if k in fields}
    raw = client(live, key).audio.speech.with_raw_response.create(**fields, extra_body=extra or None)
    return raw


def wav_samples(data: bytes) -> tuple[numpy.ndarray, int]:
    with wave.open(io.BytesIO(data)) as wav:
        assert wav.getnchannels() == 1 and wav.getsampwidth() == 2
        frames = wav.readframes(wav.getnframes())
        return numpy.frombuffer(frames, dtype="<i2").astype(numpy.float32) / 32768.0, wav.getframerate()


def test_models_lists_our_model_and_openai_aliases(live):
    api = client(live, live.key("pro"))
    ids = [m.id for m in api.models.list()]
    assert ids[0] == MODEL and {"tts-1", "gpt-4o-mini-tts"} <= set(ids)
    assert api.models.retrieve(MODEL).owned_by == "voxfleet"
    with pytest.raises(openai.NotFoundError) as caught:
        api.models.retrieve("gpt-9")
    assert caught.value.response.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize(
    ("tenant", "text", "voice"),
    [
        ("free", "今天天气很好，我们一起去公园散步吧。", "zh-female"),
        ("pro", "今天天气很好，我们一起去公园散步吧。", "Jianguo"),
        ("pro", "The quick brown fox jumps over the lazy dog.", "en-female"),
        ("pro", "Hello from Voxfleet, this is real speech.", "Joe (English, male)"),
    ],
)
def test_real_speech_is_metered_with_count_tokens(live, tenant, text, voice):
    key = live.key(tenant)
    before = remaining(live, key)

    raw = speak(live, key, input=text, voice=voice, response_format="wav")

    assert raw.http_request.headers["authorization"] == f"Bearer {key}"
    assert raw.headers["content-type"] == "audio/wav"
    samples, rate = wav_samples(raw.content)
    duration = len(samples) / rate
    assert 1.0 < duration < 15.0
    rms = float(numpy.sqrt(numpy.mean(numpy.square(samples))))
    assert rms > 0.02, "the audio is (nearly) silent"
    # Speech has pauses: a good share of 20 ms frames is voiced, not a constant tone.
    frames = samples[: len(samples) // 441 * 441].reshape(-1, 441)
    voiced = numpy.sqrt(numpy.mean(numpy.square(frames), axis=1)) > 0.02
    assert 0.3 < voiced.mean() < 0.99

    charged = int(raw.headers["x-tokens-charged"])
    assert charged == count_tokens(text)
    assert before - remaining(live, key) == charged
    seed = int(raw.headers["x-seed"])
    assert 1 <= seed <= 100_000_000
    job = rest(live, key, "GET", f"jobs/{raw.headers['x-job-id']}").json()
    assert job["status"] == "succeeded" and job["seed"] == seed and job["tokens"] == charged
    assert job["node"] == live.data["node"]
    assert job["gpu_seconds"] > 0 and job["rtf"] > 0 and job["engine_version"].startswith("cpu-")
    assert job["audio_seconds"] == pytest.approx(duration, abs=0.01)


def test_same_seed_replays_byte_identically(live):
    key = live.key("pro")
    fields = {
        "input": "同一个种子，同样的声音。",
        "voice": "zh-male",
        "instructions": "说得慢一点",
        "response_format": "wav",
    }
    first = speak(live, key, seed=31337, **fields)
    second = speak(live, key, seed=31337, **fields)
    other = speak(live, key, seed=31338, **fields)
    assert first.headers["x-seed"] == second.headers["x-seed"] == "31337"
    assert first.headers["x-job-id"] != second.headers["x-job-id"]
    assert first.content == second.content
    assert other.content != first.content
    assert int(first.headers["x-tokens-charged"]) == count_tokens(fields["input"], fields["instructions"])

    pcm = speak(live, key, seed=31337, **{**fields, "response_format": "pcm"})
    assert pcm.headers["content-type"] == "audio/pcm"
    with wave.open(io.BytesIO(first.content)) as wav:
        assert pcm.content == wav.readframes(wav.getnframes())


def test_idempotency_key_charges_once(live):
    key = live.key("pro")
    before = remaining(live, key)
    headers = {"Idempotency-Key": "e2e-retry-1"}
    api = client(live, key)
    one = api.audio.speech.with_raw_response.create(
        model=MODEL, voice="zh-female", input="重试也只收一次费。", extra_headers=headers
    )
    two = api.audio.speech.with_raw_response.create(
        model=MODEL, voice="zh-female", input="重试也只收一次费。", extra_headers=headers
    )
    assert one.headers["x-job-id"] == two.headers["x-job-id"]
    assert one.content == two.content
    assert before - remaining(live, key) == int(one.headers["x-tokens-charged"])


def _refused(live, key, exc_type, status, **fields):
    before = remaining(live, key)
    with pytest.raises(exc_type) as caught:
        speak(live, key, **fields)
    error = caught.value
    assert error.status_code == status
    body = error.response.json()["error"]
    assert set(body) == {"message", "type", "param", "code"} and body["message"]
    assert remaining(live, key) == before, "a refused request must charge nothing"
    return body


@pytest.mark.parametrize(
    ("fields", "param", "code", "words"),
    [
        ({"input": ""}, "input", "text_empty", "empty"),
        ({"input": "   "}, "input", "text_empty", "empty"),
        ({"input": "好" * 201}, "input", "text_too_long", "201"),
        ({"input": "你好", "instructions": "慢" * 101}, "instructions", "instruction_too_long", "100"),
        ({"input": "你好", "seed": 0}, "seed", "invalid_seed", "100,000,000"),
        ({"input": "你好", "seed": 100_000_001}, "seed", "invalid_seed", "100,000,000"),
        ({"input": "你好", "seed": "abc"}, "seed", "invalid_value", "integer"),
        ({"input": "你好", "speed": 9.0}, "speed", "invalid_speed", "4.0"),
        ({"input": "你好", "response_format": "ogg"}, "response_format", "unsupported_response_format", "mp3, opus"),
        ({"input": "你好", "stream_format": "websocket"}, "stream_format", "invalid_value", "sse"),
    ],
)
def test_invalid_requests_are_400_invalid_request_error(live, fields, param, code, words):
    body = _refused(live, live.key("pro"), openai.BadRequestError, 400, **fields)
    assert body["type"] == "invalid_request_error"
    assert body["param"] == param and body["code"] == code
    assert words in body["message"]


def test_malformed_json_is_400(live):
    response = httpx.post(
        f"{live.url}/v1/audio/speech",
        headers={"Authorization": f"Bearer {live.key('pro')}", "Content-Type": "application/json"},
        content=b'{"model": "cosyvoice-3", "input": ',
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_missing_and_bad_keys_are_401(live):
    response = httpx.post(f"{live.url}/v1/audio/speech", json={"model": MODEL, "input": "你好", "voice": "zh-female"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"
    with pytest.raises(openai.AuthenticationError) as caught:
        speak(live, "vf_00000000_not-a-real-key", input="你好")
    assert caught.value.response.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client(live, "vf_00000000_not-a-real-key").models.list()


@pytest.mark.parametrize(
    ("fields", "feature_word", "param"),
    [
        ({"input": "你好", "instructions": "用四川话说这句话"}, "Dialect", "instructions"),
        ({"input": "你好", "instructions": "开心地说"}, "Emotion", "instructions"),
        ({"input": "你好", "instructions": "loudly"}, "Style", "instructions"),
        ({"input": "Hello there"}, "'en'", "input"),
    ],
)
def test_free_plan_features_are_403_naming_the_feature(live, fields, feature_word, param):
    body = _refused(live, live.key("free"), openai.PermissionDeniedError, 403, **fields)
    assert body["code"] == "feature_not_in_plan" and body["param"] == param
    assert feature_word in body["message"] and "Free" in body["message"]


def test_unknown_model_is_404_model_not_found_as_openai(live):
    body = _refused(live, live.key("pro"), openai.NotFoundError, 404, input="你好", model="gpt-9")
    assert body["code"] == "model_not_found" and body["param"] == "model" and "cosyvoice-3" in body["message"]


def test_unknown_voice_is_404(live):
    body = _refused(live, live.key("pro"), openai.NotFoundError, 404, input="你好", voice="no-such-voice")
    assert body["code"] == "voice_not_found" and body["param"] == "voice"


def test_exhausted_quota_is_429_insufficient_quota(live):
    body = _refused(live, live.key("drained"), openai.RateLimitError, 429, input="你好你好你好")
    assert body["code"] == "insufficient_quota" and body["type"] == "insufficient_quota"
    assert "3 tokens" not in body["message"] and "needs 6 tokens" in body["message"]


def test_rate_limit_is_429_rate_limit_exceeded(live):
    key = live.key("limited")  # Free: 10 requests per minute
    before = remaining(live, key)
    api = client(live, key)
    statuses = []
    for _ in range(11):
        try:
            api.audio.speech.create(model=MODEL, voice="zh-female", input="")
        except openai.APIStatusError as exc:
            statuses.append(exc.status_code)
            last = exc
    assert statuses[:10] == [400] * 10 and statuses[10] == 429
    body = last.response.json()["error"]
    assert body["code"] == "rate_limit_exceeded" and int(last.response.headers["retry-after"]) >= 1
    assert remaining(live, key) == before


def test_enterprise_jobs_run_on_its_dedicated_node(live):
    key = live.key("enterprise")
    raw = speak(live, key, input="今日天气好好。", instructions="用广东话说", voice="yue-female")
    job = rest(live, key, "GET", f"jobs/{raw.headers['x-job-id']}").json()
    assert job["language"] == "yue" and job["status"] == "succeeded"
    # With a real fleet (Redis) only its dedicated node serves it; the embedded default has one node.
    expected = f"{live.data['node']}-dedicated" if live.redis else live.data["node"]
    assert job["node"] == expected
    pro_job = rest(live, live.key("pro"), "GET", "jobs", params={"limit": 1}).json()["results"]
    assert all(j["node"] != f"{live.data['node']}-dedicated" for j in pro_job)
