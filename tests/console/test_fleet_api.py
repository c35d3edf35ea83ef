"""``GET /fleet/v1/jobs/<id>/prompt-audio``: a GPU host fetches the prompt audio of a job it was
handed, with its node token; no other node learns anything of that job, and no credential a
client can send makes it answer 500."""

from __future__ import annotations

import pytest
from django.test import Client

from fleetagent.services import node_create, node_token_rotate
from inference.models import JobStatus
from inference.services import job_cancel, job_create, voice_create
from tests.inference.speech_samples import encode, speech
from tests.support.fleet import agent_hello
from tests.support.jobs import job_claim_as_worker

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fleet_routing")]


def _url(job_id: int) -> str:
    return f"/fleet/v1/jobs/{job_id}/prompt-audio"


def _get(job_id: int, token: str | None = None, **headers):
    if token is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return Client().get(_url(job_id), **headers)


@pytest.fixture
def fleet(make_tenant):
    """Node A with a cloned-voice job queued on it, node B (online, idle) and the prompt's bytes."""
    pro = make_tenant("pro")
    node_a, token_a = node_create(name="t-prompt-a")
    agent_hello(node_a)
    prompt = speech(4.0)
    audio = encode(prompt.samples, prompt.sample_rate)
    voice = voice_create(tenant=pro, name="Narrator", audio=audio, transcript="今天天气很好")
    job = job_create(tenant=pro, text="你好，欢迎使用语音合成。", voice=voice.key)
    node_b, token_b = node_create(name="t-prompt-b")
    agent_hello(node_b)
    assert job.node == node_a and job.status == JobStatus.QUEUED
    return {"tenant": pro, "job": job, "audio": audio, "a": (node_a, token_a), "b": (node_b, token_b)}


def test_the_node_the_job_is_on_gets_the_prompt_audio_with_its_version(fleet):
    job, (_, token) = fleet["job"], fleet["a"]

    response = _get(job.pk, token)

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == fleet["audio"]
    assert response["Content-Type"].startswith("audio/") and response["ETag"] == '"1"'
    # The host's cache already holds this version: nothing to send again.
    again = _get(job.pk, token, HTTP_IF_NONE_MATCH='"1"')
    assert again.status_code == 304 and again["ETag"] == '"1"'
    # While the job runs there too (a host fetches after its claim).
    job_claim_as_worker(job)
    assert _get(job.pk, token).status_code == 200


def test_another_node_gets_404_as_for_a_job_that_does_not_exist(fleet):
    job, (_, token_b) = fleet["job"], fleet["b"]

    other = _get(job.pk, token_b)
    missing = _get(job.pk + 1000, token_b)

    assert other.status_code == missing.status_code == 404
    assert other.json()["error"]["code"] == missing.json()["error"]["code"] == "not_found"
    assert str(job.pk) in other.json()["error"]["message"]  # only the id the caller sent


def test_a_finished_job_and_a_preset_voice_have_no_prompt_audio(fleet):
    job, (_, token) = fleet["job"], fleet["a"]
    preset = job_create(tenant=fleet["tenant"], text="第二句话。", voice="zh-female")
    assert preset.node == fleet["a"][0]
    assert _get(preset.pk, token).status_code == 404

    job_cancel(job=job)

    assert _get(job.pk, token).status_code == 404


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer vfn_nothing_here",
        "Bearer vfn_ünïcödé_tøken",
        "Bearer vfn_ab\x00cd_ef",
        "Bearer two tokens",
    ],
)
def test_a_malformed_or_unknown_credential_is_401_never_500(fleet, header):
    headers = {} if header is None else {"HTTP_AUTHORIZATION": header}

    response = _get(fleet["job"].pk, **headers)

    assert response.status_code == 401, response.content
    assert response.json()["error"]["code"] == "invalid_node_token"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_rotated_token_no_longer_works(fleet):
    node, old = fleet["a"]
    new = node_token_rotate(node=node)

    assert _get(fleet["job"].pk, old).status_code == 401
    assert _get(fleet["job"].pk, new).status_code == 200


def test_only_get_is_allowed(fleet):
    _, token = fleet["a"]
    response = Client().post(_url(fleet["job"].pk), HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 405
