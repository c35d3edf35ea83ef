"""Dispatch by protocol: a host that runs jobs with no database (v3) gets the whole job in its
message (fleetagent.protocol, JOB); older agents, and nodes that never connected, get the
legacy task that claims in the database. Captured as Celery publishes it (not eager)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.db.models import F

from fleetagent import protocol
from fleetagent.models import Node
from inference.engines.base import PRESET_VOICES_BY_KEY
from inference.models import SynthesisJob
from inference.services import (
    SYNTHESIZE_TASK,
    job_create,
    job_requeue_from_node,
    jobs_republish_stale,
    voice_create,
)
from inference.text import Instruction, parse_instruction
from tests.inference.speech_samples import encode, speech
from tests.support.fleet import node_online
from tests.support.jobs import job_claim_as_worker

pytestmark = pytest.mark.usefixtures("fleet_routing")

JOB_KEYS = {"job_id", "attempt", "text", "language", "instruction", "seed", "speed", "deadline_ts", "voice"}
VOICE_KEYS = {
    "key",
    "version",
    "language",
    "gender",
    "display_name",
    "profile",
    "prompt_transcript",
    "has_prompt_audio",
}


def _node(name: str, version: int) -> Node:
    node = node_online(name)
    Node.objects.filter(pk=node.pk).update(protocol_version=version)  # what that agent's hello said
    node.refresh_from_db()
    return node


def _accept(tenant, capture, **kwargs) -> SynthesisJob:
    with capture(execute=True):
        job = job_create(tenant=tenant, **{"text": "你好，欢迎使用语音合成。", "voice": "zh-female", **kwargs})
    job.refresh_from_db()
    return job


def test_a_v3_host_gets_the_whole_job_in_its_message(make_tenant, django_capture_on_commit_callbacks, published):
    pro = make_tenant("pro")
    _node("t-v3", protocol.JOB_FRAMES_FROM)
    prompt = speech(4.0)
    voice = voice_create(
        tenant=pro, name="Narrator", audio=encode(prompt.samples, prompt.sample_rate), transcript="今天天气很好"
    )

    job = _accept(
        pro,
        django_capture_on_commit_callbacks,
        voice=voice.key,
        instruction="用四川话说，开心一点",
        seed=4242,
        speed=1.25,
    )

    [(queue, task, args, kwargs)] = published
    assert (queue, task, args, list(kwargs)) == ("node.t-v3", protocol.RUN_JOB_TASK, [], ["job"])
    message = kwargs["job"]
    assert set(message) == JOB_KEYS and set(message["voice"]) == VOICE_KEYS
    assert json.loads(json.dumps(message)) == message  # Celery's JSON carries it unchanged
    assert message["job_id"] == job.pk and message["attempt"] == 1
    assert (message["text"], message["language"], message["seed"], message["speed"]) == (
        job.text,
        job.language,
        4242,
        1.25,
    )
    assert message["deadline_ts"] == pytest.approx(job.deadline_at.timestamp())
    # The host turns the instruction back into the one the console parsed.
    assert Instruction.from_dict(message["instruction"]) == parse_instruction(job.instruction)
    assert Instruction.from_dict(message["instruction"]).dialect == "sichuan"
    assert message["voice"] == {
        "key": voice.key,
        "version": 1,
        "language": voice.language,
        "gender": voice.gender,
        "display_name": "Narrator",
        "profile": voice.profile,
        "prompt_transcript": "今天天气很好",
        "has_prompt_audio": True,
    }


def test_a_preset_voice_has_no_prompt_audio_and_version_0(make_tenant, django_capture_on_commit_callbacks, published):
    pro = make_tenant("pro")
    _node("t-v3", protocol.JOB_FRAMES_FROM)

    _accept(pro, django_capture_on_commit_callbacks, voice="en-male", text="Hello there.")

    voice = published[0][3]["job"]["voice"]
    preset = PRESET_VOICES_BY_KEY["en-male"]
    assert voice["key"] == "en-male" and voice["version"] == 0 and voice["has_prompt_audio"] is False
    assert voice["display_name"] == preset.display_name and published[0][3]["job"]["instruction"] is None


@pytest.mark.parametrize("version", [0, 1, 2])
def test_older_agents_and_never_connected_nodes_get_the_legacy_task(
    version, make_tenant, django_capture_on_commit_callbacks, published
):
    pro = make_tenant("pro")
    _node("t-old", version)

    job = _accept(pro, django_capture_on_commit_callbacks)

    assert published == [("node.t-old", SYNTHESIZE_TASK, [job.pk], {"node_name": "t-old"})]


def test_a_republished_job_keeps_its_attempt_and_a_requeued_one_gets_the_next(
    make_tenant, django_capture_on_commit_callbacks, published
):
    pro = make_tenant("pro")
    node = _node("t-v3", protocol.JOB_FRAMES_FROM)
    job = _accept(pro, django_capture_on_commit_callbacks)

    # Its message was lost (a broker restart): republished with the same attempt, so a late
    # original and the copy both name the one attempt the claim accepts.
    SynthesisJob.objects.filter(pk=job.pk).update(queued_at=F("queued_at") - dt.timedelta(seconds=60))
    assert jobs_republish_stale() == [job.pk]
    assert [m[3]["job"]["attempt"] for m in published] == [1, 1]

    # It ran once and its node died: requeued, it goes out as attempt 2.
    job_claim_as_worker(job)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = job_requeue_from_node(node_name=node.name)
    assert outcome.requeued == [job.pk]
    assert published[-1][1] == protocol.RUN_JOB_TASK and published[-1][3]["job"]["attempt"] == 2
