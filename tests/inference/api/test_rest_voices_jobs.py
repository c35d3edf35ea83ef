"""/api/v1 over HTTP against the live server: voices, async jobs, usage, quota, and outsiders."""

from __future__ import annotations

import io
import time
import wave

import httpx
import numpy
import openai
import pytest

from billing.metering import count_tokens
from tests.inference.speech_samples import encode, speech
from tests.support.live_clients import client, remaining, rest


@pytest.fixture(scope="module")
def prompt_wav() -> bytes:
    sample = speech(6.0, "en-female")
    return encode(sample.samples, sample.sample_rate)


def upload(live, key, *, name, audio, transcript=""):
    return rest(
        live,
        key,
        "POST",
        "voices",
        data={"name": name, "transcript": transcript},
        files={"audio": ("prompt.wav", audio, "audio/wav")},
    )


def test_voice_library_create_list_rename_use_delete(live, prompt_wav):
    key = live.key("pro")
    created = upload(live, key, name="Ada", audio=prompt_wav, transcript="The quick brown fox.")
    assert created.status_code == 201, created.text
    voice = created.json()
    assert voice["id"].startswith("tenant-voice-") and voice["name"] == "Ada" and voice["preset"] is False
    assert voice["language"] == "en" and voice["prompt_duration_s"] >= 3

    listed = rest(live, key, "GET", "voices").json()
    assert all({"id", "name"} <= set(v) for v in listed)
    presets = [v for v in listed if v["preset"]]
    assert {v["id"] for v in presets} >= {"zh-female", "zh-male", "en-female", "en-male"}
    assert voice["id"] in [v["id"] for v in listed]

    renamed = rest(live, key, "PATCH", f"voices/{voice['id']}", json={"name": "Ada Lovelace"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Ada Lovelace"
    clash = upload(live, key, name="ada lovelace", audio=prompt_wav)
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "voice_name_taken"

    # The cloned voice speaks, by id and by name, through the OpenAI endpoint.
    by_name = client(live, key).audio.speech.with_raw_response.create(
        model="cosyvoice-3",
        voice="Ada Lovelace",
        input="Cloned voices work too.",
        response_format="wav",
        extra_body={"seed": 5},
    )
    by_id = client(live, key).audio.speech.with_raw_response.create(
        model="cosyvoice-3",
        voice={"id": voice["id"]},
        input="Cloned voices work too.",
        response_format="wav",
        extra_body={"seed": 5},
    )
    assert by_name.content == by_id.content and len(by_name.content) > 20_000

    preset_edit = rest(live, key, "PATCH", "voices/zh-female", json={"name": "Mine"})
    assert preset_edit.status_code == 403

    assert rest(live, key, "DELETE", f"voices/{voice['id']}").status_code == 204
    assert rest(live, key, "GET", f"voices/{voice['id']}").status_code == 404


@pytest.mark.parametrize(
    ("audio", "code"),
    [
        (b"this is not audio at all" * 10, "audio_not_audio"),
        (encode(numpy.zeros(16000 * 5, dtype=numpy.float32), 16000), "audio_silent"),
        (encode(speech(6.0, "zh-female").samples[:22050], 22050), "speech_too_short"),
    ],
)
def test_bad_prompt_audio_is_refused_with_a_clear_message(live, audio, code):
    response = upload(live, live.key("pro"), name=f"bad-{code}", audio=audio)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == code and len(error["message"]) > 20


def test_async_job_create_poll_download(live):
    key = live.key("pro")
    before = remaining(live, key)
    created = rest(live, key, "POST", "jobs", json={"input": "异步任务，稍后下载。", "voice": "zh-female", "seed": 99})
    assert created.status_code == 202, created.text
    job = created.json()
    assert job["status"] in ("accepted", "queued", "running", "succeeded") and job["seed"] == 99
    deadline = time.monotonic() + 60
    while job["status"] not in ("succeeded", "failed", "cancelled") and time.monotonic() < deadline:
        time.sleep(0.1)
        job = rest(live, key, "GET", f"jobs/{job['id']}").json()
    assert job["status"] == "succeeded"
    assert job["tokens"] == count_tokens("异步任务，稍后下载。") == before - remaining(live, key)
    audio = rest(live, key, "GET", f"jobs/{job['id']}/audio")
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(audio.content)) as wav:
        assert wav.getnframes() / wav.getframerate() == pytest.approx(job["audio_seconds"], abs=0.01)
    again = rest(live, key, "POST", f"jobs/{job['id']}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_not_cancellable"
    listed = rest(live, key, "GET", "jobs", params={"limit": 5}).json()
    assert listed["count"] >= 1 and job["id"] in [j["id"] for j in listed["results"]]


def test_usage_and_quota(live):
    key = live.key("pro")
    quota = rest(live, key, "GET", "quota").json()
    assert isinstance(quota["remaining"], int) and quota["plan_code"] == "pro"
    usage = rest(live, key, "GET", "usage", params={"days": 7}).json()
    assert usage["tokens_charged"] == quota["used"]
    assert usage["jobs_by_status"]["succeeded"] >= 1


def test_outsider_gets_404_for_another_tenants_voices_and_jobs(live, prompt_wav):
    owner, outsider = live.key("pro"), live.key("outsider")
    voice = upload(live, owner, name="Private", audio=prompt_wav).json()
    job = rest(live, owner, "POST", "jobs", json={"input": "私人任务", "voice": voice["id"]}).json()

    for method, path in [
        ("GET", f"voices/{voice['id']}"),
        ("PATCH", f"voices/{voice['id']}"),
        ("DELETE", f"voices/{voice['id']}"),
        ("GET", f"jobs/{job['id']}"),
        ("GET", f"jobs/{job['id']}/audio"),
        ("POST", f"jobs/{job['id']}/cancel"),
    ]:
        response = rest(live, outsider, method, path, json={"name": "stolen"} if method == "PATCH" else None)
        assert response.status_code == 404, (method, path, response.text)
    assert voice["id"] not in [v["id"] for v in rest(live, outsider, "GET", "voices").json()]
    assert job["id"] not in [j["id"] for j in rest(live, outsider, "GET", "jobs").json()["results"]]
    before = remaining(live, outsider)
    for ref in (voice["id"], "Private"):
        with pytest.raises(openai.NotFoundError):
            client(live, outsider).audio.speech.create(model="cosyvoice-3", voice=ref, input="偷用声音")
    assert remaining(live, outsider) == before
    # The owner's things are untouched.
    assert rest(live, owner, "GET", f"voices/{voice['id']}").json()["name"] == "Private"


def test_rest_requires_authentication(live):
    for path in ("voices", "jobs", "quota", "usage"):
        response = httpx.get(f"{live.url}/api/v1/{path}")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "not_authenticated"


def test_openapi_schema_and_docs_show_the_endpoints(live):
    schema = httpx.get(f"{live.url}/api/schema/", headers={"Accept": "application/json"}).json()
    paths = schema["paths"]
    for path in ("/v1/audio/speech", "/v1/models", "/api/v1/voices", "/api/v1/jobs", "/api/v1/quota", "/api/v1/usage"):
        assert path in paths
    assert "ApiKey" in schema["components"]["securitySchemes"]
    speech = paths["/v1/audio/speech"]["post"]
    assert "audio/wav" in speech["responses"]["200"]["content"]
    assert speech["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("SpeechRequest")
    assert httpx.get(f"{live.url}/api/docs/").status_code == 200
