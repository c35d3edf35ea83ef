"""A GPU host's job runner against a real console (uvicorn in this process, real sockets).

The host's parts are the ones ``python -m fleetagent`` runs: the agent client on its own loop
thread, ``HostRuntime``, ``ConsoleLink``, ``JobRunner`` and the prompt cache. Jobs are accepted
by the jobs app's own services, which publish the job message on the node's queue; the test
takes that message off the broker (what the host's Celery worker would do) and hands it to the
runner. Only NVML is a double (no GPU here).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import soundfile
from celery import current_app

from billing.selectors import quota_get
from fleetagent import protocol
from fleetagent.agent.client import AgentClient, AgentRefused
from fleetagent.agent.collect import collector_open
from fleetagent.agent.host import ConsoleLink, HostRuntime
from fleetagent.agent.prompts import PromptCache
from fleetagent.agent.stats import JobStats
from fleetagent.agent.worker import JobRunner, NotAJob, RetryLater, synthesis_request
from fleetagent.models import Node
from fleetagent.services import node_create
from inference.audio.encode import pcm16
from inference.engines import engine_get
from inference.models import JobStatus, SynthesisJob
from inference.services import job_create, voice_create
from tests.fleetagent.fake_nvml import FakeNvml
from tests.inference.speech_samples import encode, speech
from tests.support.live_server import ThreadedLiveServer, wait_until

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.timeout(180)]

LONG_TEXT = "你好，欢迎使用语音合成。今天天气很好，我们一起去公园散步吧。" * 6  # 180 characters (the cap is 200)


@dataclass
class Host:
    server: ThreadedLiveServer
    node: Node
    token: str
    client: AgentClient
    runtime: HostRuntime
    runner: JobRunner
    prompts: PromptCache
    loop: asyncio.AbstractEventLoop

    def on_loop(self, coroutine, timeout_s: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)


def _agent(url: str, token: str, runtime: HostRuntime, stats: JobStats, **kwargs) -> AgentClient:
    return AgentClient(
        console_url=url,
        token=token,
        collector=collector_open(nvml=FakeNvml()),
        runtime=runtime,
        stats=stats,
        interval_s=0.5,
        **kwargs,
    )


@pytest.fixture
def host(fleet_routing, tmp_path):
    server = ThreadedLiveServer().start()
    node, token = node_create(name="t-runner-a")
    _queue_purge(node.queue_name)  # the in-memory broker outlives tests (Redis is purged by fleet_routing)
    stats = JobStats()
    runtime = HostRuntime(node_name="", stats=stats)
    client = _agent(server.url, token, runtime, stats)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="test-host-agent", daemon=True).start()
    agent = asyncio.run_coroutine_threadsafe(client.run(), loop)
    prompts = PromptCache(tmp_path / "host-cache")
    runner = JobRunner(runtime=runtime, link=ConsoleLink(client), prompts=prompts, console_http=server.url, token=token)
    ready = Host(server, node, token, client, runtime, runner, prompts, loop)
    ready.on_loop(client.connected.wait(), timeout_s=15)
    try:
        yield ready
    finally:
        loop.call_soon_threadsafe(client.stop)
        agent.result(15)
        loop.call_soon_threadsafe(loop.stop)
        server.stop()


def _queue_purge(queue_name: str) -> None:
    with current_app.connection_for_write() as connection:
        queue = connection.SimpleQueue(queue_name)
        try:
            queue.clear()
        finally:
            queue.close()


def _published_job(queue_name: str) -> dict:
    """The job message the console published on the node's queue (as the host's worker receives it)."""
    with current_app.connection_for_read() as connection:
        queue = connection.SimpleQueue(queue_name)
        try:
            message = queue.get(timeout=10)
            assert message.headers["task"] == protocol.RUN_JOB_TASK
            _args, kwargs, _embed = message.decode()
            message.ack()
        finally:
            queue.close()
    return kwargs["job"]


def _accepted(host: Host, tenant, **kwargs) -> tuple[SynthesisJob, dict]:
    job = job_create(tenant=tenant, **kwargs)
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.node_id == host.node.pk
    return job, _published_job(host.node.queue_name)


def _output_pcm(job: SynthesisJob) -> bytes:
    samples, _rate = soundfile.read(job.output_path, dtype="int16")
    return samples.astype("<i2").tobytes()


def test_the_host_speaks_v3_and_serves_a_preset_voice_job_whose_wav_the_console_writes(host, make_tenant):
    assert Node.objects.get(pk=host.node.pk).protocol_version == protocol.PROTOCOL_VERSION == 3
    pro = make_tenant("pro")
    job, message = _accepted(host, pro, text="你好，欢迎使用语音合成。", voice="zh-female", seed=7)
    assert message["job_id"] == job.pk and message["attempt"] == 1

    assert host.runner.run(message) == "succeeded"

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.attempts == 1 and job.node_id == host.node.pk
    # The console wrote exactly the audio the engine made, from the host's frames.
    expected = engine_get().synthesize(synthesis_request(message, prompt_audio_path=None))
    assert _output_pcm(job) == pcm16(expected.samples)
    assert job.engine_version and job.gpu_seconds > 0 and abs(job.audio_seconds - expected.duration_s) < 0.01
    assert quota_get(tenant=pro).used > 0 and quota_get(tenant=pro).reserved == 0
    # The host's own outcome feeds its stats; it holds nothing any more.
    assert host.runtime.held() == [] and host.runtime.stats.snapshot()["jobs_total"] == {"succeeded": 1}

    # A redelivered message (the broker handing it out again) is refused and changes nothing.
    used = quota_get(tenant=pro).used
    assert host.runner.run(message) == "dropped"
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.attempts == 1 and quota_get(tenant=pro).used == used


def test_a_cloned_voice_s_prompt_audio_is_fetched_with_the_node_token_and_cached_per_version(host, make_tenant):
    pro = make_tenant("pro")
    prompt = speech(6.0, "zh-female")
    audio = encode(prompt.samples, prompt.sample_rate)
    voice = voice_create(tenant=pro, name="Narrator", audio=audio, transcript="今天天气很好")
    job, message = _accepted(host, pro, text="你好，世界。", voice=voice.key, seed=3)
    assert message["voice"]["has_prompt_audio"] and message["voice"]["version"] == voice.version

    assert host.runner.run(message) == "succeeded"
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    cached = host.prompts.path(key=voice.key, version=voice.version)
    assert cached is not None and cached.read_bytes() == audio and cached.suffix == ".wav"

    # The console's copy goes away: the next job of the same voice version runs from the cache.
    Path(voice.spec().prompt_audio_path).unlink()
    second, message = _accepted(host, pro, text="再见。", voice=voice.key, seed=4)
    assert host.runner.run(message) == "succeeded"
    second.refresh_from_db()
    assert second.status == JobStatus.SUCCEEDED and host.prompts.size() == len(audio)


def test_a_dropped_connection_stops_the_job_instead_of_finishing_it_into_the_void(host, make_tenant):
    pro = make_tenant("pro")
    job, message = _accepted(host, pro, text=LONG_TEXT, voice="zh-female", seed=5)
    outcome: list[str] = []
    running = threading.Thread(target=lambda: outcome.append(host.runner.run(message)))
    running.start()
    wait_until(lambda: host.runtime.held(), what="the host to hold the job", timeout_s=30)
    host.loop.call_soon_threadsafe(host.client.stop)  # the agent goes away mid-job
    running.join(60)
    assert outcome == ["requeued"]  # stopped: the console's lease or bye handling decides
    # Handed back to wait for a node (the console handles the agent's bye), not finished: nothing
    # settled, the tokens only reserved until another attempt runs it or its deadline passes.
    waiting = (JobStatus.ACCEPTED, JobStatus.QUEUED)
    wait_until(lambda: SynthesisJob.objects.get(pk=job.pk).status in waiting, what="the job handed back", timeout_s=15)
    job.refresh_from_db()
    assert job.attempts == 1 and not job.output_path
    quota = quota_get(tenant=pro)
    assert quota.reserved > 0 and quota.used == quota.reserved


def test_a_restart_waits_for_the_held_job_and_its_ack_says_how_the_console_closed_it(host, make_tenant):
    pro = make_tenant("pro")
    job, message = _accepted(host, pro, text=LONG_TEXT[:60], voice="zh-female", seed=6)
    outcome: list[str] = []
    running = threading.Thread(target=lambda: outcome.append(host.runner.run(message)))
    running.start()
    wait_until(lambda: host.runtime.held(), what="the host to hold the job", timeout_s=30)
    detail = host.on_loop(host.runtime.restart(), timeout_s=120)
    running.join(30)
    assert outcome == ["succeeded"]
    assert detail["jobs"] == {str(job.pk): "succeeded"} and detail["jobs_finished"] == 1
    assert detail["jobs_failed"] == 0 and detail["jobs_requeued"] == 0 and detail["engine_reloaded"] is True
    assert host.runtime.draining is False  # it was not drained before the restart


def test_a_wrong_token_ends_the_agent_at_its_first_connection(fleet_routing):
    server = ThreadedLiveServer().start()
    try:
        stats = JobStats()
        client = _agent(
            server.url, "vfn_not-a-real-token", HostRuntime(node_name="", stats=stats), stats, stop_on_refusal=True
        )
        with pytest.raises(AgentRefused, match="HTTP 403"):
            asyncio.run(asyncio.wait_for(client.run(), timeout=30))
    finally:
        server.stop()


def _offline_runner(tmp_path) -> JobRunner:
    """A runner whose agent never connected (the console unreachable)."""
    stats = JobStats()
    runtime = HostRuntime(node_name="t-host-off", stats=stats)
    client = _agent("http://127.0.0.1:9", "vfn_x", runtime, stats)
    return JobRunner(
        runtime=runtime, link=ConsoleLink(client), prompts=PromptCache(tmp_path), console_http="", token="vfn_x"
    )


@pytest.mark.django_db(transaction=False)
def test_a_job_that_cannot_be_claimed_goes_back_to_the_queue_and_one_past_its_deadline_is_dropped(tmp_path):
    runner = _offline_runner(tmp_path)
    job = {"job_id": 41, "attempt": 1, "deadline_ts": time.time() + 60}
    with pytest.raises(RetryLater, match="not connected"):
        runner.run(job)  # never acked away: the worker retries the message later
    assert runner.runtime.held() == [] and asyncio.run(runner.runtime.counts()) == (0, 0)
    assert runner.run({**job, "deadline_ts": time.time() - 1}) == "expired"
    with pytest.raises(NotAJob):
        runner.run({"text": "no identity"})
    runner.runtime.draining = True
    with pytest.raises(RetryLater, match="drained"):
        runner.run(job)


class _Recording:
    """The loaded engine, counting the pieces it was asked for (and, with ``fail``, failing at the first)."""

    def __init__(self, *, fail: bool = False) -> None:
        self.engine = engine_get()
        self.fail = fail
        self.pieces = 0

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def synthesize_stream(self, request):
        for piece in self.engine.synthesize_stream(request):
            self.pieces += 1
            if self.fail:
                raise RuntimeError("the engine fell over")
            yield piece


def _frames_sent(host: Host, monkeypatch) -> list:
    """What the runner sends on its link from now on: audio frames and job reports (kinds)."""
    sent: list = []
    link = host.runner.link
    send, request = link.send, link.request
    monkeypatch.setattr(link, "send", lambda data, **kw: (sent.append("audio"), send(data, **kw))[1])
    monkeypatch.setattr(link, "request", lambda kind, **kw: (sent.append(kind), request(kind, **kw))[1])
    return sent


def test_the_engine_starts_while_the_claim_travels_and_a_refused_claim_sends_nothing(host, make_tenant, monkeypatch):
    pro = make_tenant("pro")
    job, message = _accepted(host, pro, text="你好，欢迎使用语音合成。", voice="zh-female", seed=11)
    assert host.runner.run(message) == "succeeded"
    recording = _Recording()
    host.runner.engine = lambda: recording
    sent = _frames_sent(host, monkeypatch)

    # Redelivered: the engine made its first piece before the console refused the claim, and
    # the piece went nowhere (no audio frame, no report).
    assert host.runner.run(message) == "dropped"
    assert recording.pieces == 1 and sent == []
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.attempts == 1
    assert host.runtime.held() == [] and asyncio.run(host.runtime.counts()) == (0, 0)


def test_an_engine_failure_before_the_claim_is_answered_is_reported_once_the_job_is_the_node_s(
    host, make_tenant, monkeypatch
):
    pro = make_tenant("pro")
    job, message = _accepted(host, pro, text="你好，欢迎使用语音合成。", voice="zh-female", seed=12)
    host.runner.engine = lambda: _Recording(fail=True)
    sent = _frames_sent(host, monkeypatch)

    assert host.runner.run(message) == "failed"
    assert sent == [protocol.JOB_FAIL]
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.error_code == "engine_error" and "fell over" in job.error
    assert quota_get(tenant=pro).reserved == 0 and quota_get(tenant=pro).used == 0  # released, not charged
    # The same failure for a message that is no longer the node's is not reported at all.
    assert host.runner.run(message) == "dropped"
    assert sent == [protocol.JOB_FAIL]
