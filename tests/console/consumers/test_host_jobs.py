"""A GPU host that holds no database (agent protocol v3) runs jobs over its websocket.

The real ASGI app, driven as a v3 host would: hello v3 -> welcome -> job_start -> binary audio
frames -> job_done. The console alone writes the WAV and settles or releases; listeners hear the
host's audio while it arrives; a node can report only on its own jobs in their current attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json

import numpy
import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from billing.selectors import quota_get
from billing.services import limits
from console.consumers import agents
from fleetagent import protocol
from fleetagent.models import Node
from fleetagent.services import node_create
from inference.models import JobStatus, SynthesisJob
from inference.reconcile import books_drift_find
from inference.services import job_create, job_output_path, jobs_recover
from inference.streaming import final_pcm, job_audio_listen, partial_path
from tests.console.consumers.fleet_helpers import agent_headers, hello, sample, ws_connected

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("fleet_routing"),
    pytest.mark.timeout(120),
]

AGENT = "/ws/agent/"
V3 = protocol.JOB_FRAMES_FROM
RATE = 24_000


def pcm_of(seconds: float, *, hz: float = 220.0) -> bytes:
    t = numpy.arange(int(RATE * seconds)) / RATE
    return (numpy.sin(2 * numpy.pi * hz * t) * 12_000).astype("<i2").tobytes()


def job_frame(kind: str, **fields) -> str:
    return protocol.message_encode(kind, version=V3, **fields)


def audio(job_id: int, attempt: int, offset: int, pcm: bytes, *, sample_rate: int = RATE) -> bytes:
    return protocol.audio_frame_encode(job_id=job_id, attempt=attempt, sample_rate=sample_rate, offset=offset, pcm=pcm)


async def reply(ws, *, timeout: float = 10) -> dict:
    return json.loads(await ws.receive_from(timeout=timeout))


@contextlib.asynccontextmanager
async def v3_host(token: str, *, jobs=()):
    """A v3 host connected: it said hello (holding ``jobs``) and was welcomed."""
    async with ws_connected(AGENT, headers=agent_headers(token)) as ws:
        await ws.send_to(text_data=hello(version=V3, jobs=[list(j) for j in jobs]))
        welcome = await reply(ws)
        assert welcome["type"] == protocol.WELCOME and welcome["v"] == V3, welcome
        yield ws


async def started_job(ws, tenant, text: str = "你好，欢迎使用语音合成。") -> SynthesisJob:
    """A job accepted (queued on the one host) and claimed by it: attempt 1 runs."""
    job = await accept(tenant, text=text)
    assert (await claim(ws, job.pk))["ok"] is True
    return job


async def claim(ws, job_id: int, attempt: int = 1) -> dict:
    await ws.send_to(text_data=job_frame(protocol.JOB_START, job_id=job_id, attempt=attempt))
    answer = await reply(ws)
    assert answer["type"] == protocol.JOB_CLAIM and (answer["job_id"], answer["attempt"]) == (job_id, attempt)
    return answer


async def done(ws, job_id: int, attempt: int, audio_bytes: int) -> dict:
    await ws.send_to(
        text_data=job_frame(
            protocol.JOB_DONE,
            job_id=job_id,
            attempt=attempt,
            audio_bytes=audio_bytes,
            gpu_seconds=0.4,
            audio_seconds=audio_bytes / 2 / RATE,
            engine_version="cosyvoice3-1.1",
        )
    )
    return await reply(ws)


@database_sync_to_async
def accept(tenant, text: str = "你好，欢迎使用语音合成。") -> SynthesisJob:
    return job_create(tenant=tenant, text=text, voice="zh-female")


@database_sync_to_async
def fresh(job) -> SynthesisJob:
    return SynthesisJob.objects.select_related("node").get(pk=job.pk)


@database_sync_to_async
def quota(tenant):
    return quota_get(tenant=tenant)


@database_sync_to_async
def refused_count(node) -> int:
    return Node.objects.get(pk=node.pk).frames_refused


class Listener:
    """A ``job_audio_listen`` client (the speech call that created the job): pieces as they come."""

    def __init__(self, job) -> None:
        self.pieces: asyncio.Queue[bytes] = asyncio.Queue()

        async def is_finished() -> bool:
            return (await fresh(job)).is_finished

        async def run() -> None:
            output = job_output_path(job=job)
            async for piece in job_audio_listen(job_id=job.pk, output=output, is_finished=is_finished, timeout_s=60):
                await self.pieces.put(piece.pcm)

        self.task = asyncio.create_task(run())

    async def next(self) -> bytes:
        return await asyncio.wait_for(self.pieces.get(), timeout=10)


@pytest.fixture
def pro(make_tenant):
    return make_tenant("pro")


@pytest.fixture
def host_a(db):
    return node_create(name="t-host-a")


@pytest.fixture
def host_b(db):
    return node_create(name="t-host-b")


async def test_a_v3_host_runs_a_job_end_to_end_heard_live_and_settled_once(pro, host_a, published):
    node, token = host_a
    full = (await quota(pro)).remaining
    first, second = pcm_of(0.3), pcm_of(0.2, hz=330.0)
    async with v3_host(token) as ws:
        job = await accept(pro)
        [(queue, task, _, kwargs)] = published
        assert (queue, task, kwargs["job"]["job_id"], kwargs["job"]["attempt"]) == (
            "node.t-host-a",
            protocol.RUN_JOB_TASK,
            job.pk,
            1,
        )
        listener = Listener(job)

        assert (await claim(ws, job.pk))["ok"] is True
        running = await fresh(job)
        assert running.status == JobStatus.RUNNING and running.attempts == 1
        assert running.lease_expires_at > timezone.now() + dt.timedelta(seconds=protocol.LEASE_S - 2)

        # Each piece reaches the listener while the job is still running.
        await ws.send_to(bytes_data=audio(job.pk, 1, 0, first))
        assert await listener.next() == first
        await ws.send_to(bytes_data=audio(job.pk, 1, len(first), second))
        assert await listener.next() == second
        assert (await fresh(job)).status == JobStatus.RUNNING

        closed = await done(ws, job.pk, 1, len(first) + len(second))
        assert closed == {
            "type": protocol.JOB_CLOSED,
            "v": V3,
            "job_id": job.pk,
            "attempt": 1,
            "status": JobStatus.SUCCEEDED,
        }
        await asyncio.wait_for(listener.task, timeout=10)  # the end was announced

        finished = await fresh(job)
        assert finished.status == JobStatus.SUCCEEDED and finished.engine_version == "cosyvoice3-1.1"
        assert finished.output_path == str(job_output_path(job=job))
        assert final_pcm(finished.output_path) == (RATE, first + second)
        assert not partial_path(job_output_path(job=job)).exists()
        settled = await quota(pro)
        assert settled.reserved == 0 and settled.used == job.tokens and settled.remaining == full - job.tokens
        assert await database_sync_to_async(limits.job_slots_in_use)(tenant=pro) == 0

        # A duplicate job_done (a host that did not hear the answer) changes nothing.
        again = await done(ws, job.pk, 1, len(first) + len(second))
        assert again["status"] == JobStatus.SUCCEEDED
        assert (await quota(pro)).used == job.tokens
        assert await database_sync_to_async(books_drift_find)() == []
        assert await refused_count(node) == 0


async def test_job_fail_releases_the_tokens(pro, host_a):
    _, token = host_a
    full = (await quota(pro)).remaining
    async with v3_host(token) as ws:
        job = await started_job(ws, pro)
        await ws.send_to(bytes_data=audio(job.pk, 1, 0, pcm_of(0.1)))
        await ws.send_to(
            text_data=job_frame(
                protocol.JOB_FAIL, job_id=job.pk, attempt=1, code="cuda_oom", message="CUDA out of memory\nTraceback"
            )
        )
        closed = await reply(ws)
        assert (closed["type"], closed["status"]) == (protocol.JOB_CLOSED, JobStatus.FAILED)

    failed = await fresh(job)
    assert failed.status == JobStatus.FAILED and failed.error_code == "cuda_oom"
    assert "CUDA out of memory Traceback" in failed.error
    after = await quota(pro)
    assert after.reserved == 0 and after.used == 0 and after.remaining == full
    assert not partial_path(job_output_path(job=job)).exists()
    assert await database_sync_to_async(books_drift_find)() == []


async def test_another_node_cannot_start_stream_renew_or_close_a_job(pro, host_a, host_b):
    node_a, token_a = host_a
    node_b, token_b = host_b
    async with v3_host(token_a) as ws_a:
        queued = await accept(pro)
        running = await accept(pro, text="第二句话。")
        await claim(ws_a, running.pk)
        piece = pcm_of(0.2)
        await ws_a.send_to(bytes_data=audio(running.pk, 1, 0, piece))
        before = await fresh(running)
        held = await quota(pro)

        async with v3_host(token_b) as ws_b:

            async def refused(*, job_id: int, attempt: int) -> None:
                error = await reply(ws_b)
                assert (error["type"], error["code"]) == (protocol.ERROR, "not_your_job"), error
                assert (error["job_id"], error["attempt"]) == (job_id, attempt)

            for job, attempt in ((queued, 1), (running, 1), (running, 2)):
                await ws_b.send_to(text_data=job_frame(protocol.JOB_START, job_id=job.pk, attempt=attempt))
                await refused(job_id=job.pk, attempt=attempt)
                answer = await reply(ws_b)
                assert (answer["type"], answer["ok"], answer["reason"]) == (protocol.JOB_CLAIM, False, "not_your_job")

            await ws_b.send_to(bytes_data=audio(running.pk, 1, len(piece), pcm_of(0.1)))
            await refused(job_id=running.pk, attempt=1)
            await ws_b.send_to(text_data=job_frame(protocol.JOB_RENEW, jobs=[[running.pk, 1]]))
            await refused(job_id=running.pk, attempt=1)
            for kind, fields in (
                (protocol.JOB_DONE, {"audio_bytes": len(piece), "gpu_seconds": 1.0, "audio_seconds": 0.2}),
                (protocol.JOB_FAIL, {"code": "oops", "message": ""}),
            ):
                await ws_b.send_to(text_data=job_frame(kind, job_id=running.pk, attempt=1, **fields))
                await refused(job_id=running.pk, attempt=1)
                answer = await reply(ws_b)
                assert (answer["type"], answer["status"]) == (protocol.JOB_CLOSED, "refused")

        # Nothing changed: A's jobs are as they were, nothing charged or released, no audio
        # of B's in A's stream; every refusal was counted on B, none on A.
        assert (await fresh(queued)).status == JobStatus.QUEUED
        after = await fresh(running)
        assert (after.status, after.attempts, after.node_id, after.lease_expires_at) == (
            JobStatus.RUNNING,
            1,
            node_a.pk,
            before.lease_expires_at,
        )
        now_held = await quota(pro)
        assert (now_held.reserved, now_held.remaining, now_held.used) == (held.reserved, held.remaining, held.used)
        assert held.reserved == queued.tokens + running.tokens
        assert await refused_count(node_b) == 7 and await refused_count(node_a) == 0

        # A finishes its job unharmed, with exactly its own audio.
        assert (await done(ws_a, running.pk, 1, len(piece)))["status"] == JobStatus.SUCCEEDED
        assert final_pcm((await fresh(running)).output_path) == (RATE, piece)


async def test_a_lease_not_renewed_is_reclaimed_in_seconds_and_the_stale_attempt_is_refused(pro, host_a, published):
    node, token = host_a
    full = (await quota(pro)).remaining
    async with v3_host(token) as ws:
        job = await started_job(ws, pro)
        started = (await fresh(job)).lease_expires_at - dt.timedelta(seconds=protocol.LEASE_S)

        # Renewed: a pass past the first lease leaves it running.
        await ws.send_to(text_data=job_frame(protocol.JOB_RENEW, jobs=[[job.pk, 1]]))
        renewed_at = timezone.now()

        async def lease():  # a renewal has no answer: the row says when it landed
            return (await fresh(job)).lease_expires_at

        for _ in range(100):
            if await lease() >= renewed_at + dt.timedelta(seconds=protocol.LEASE_S - 1):
                break
            await asyncio.sleep(0.05)
        lease_end = await lease()
        assert lease_end > started + dt.timedelta(seconds=protocol.LEASE_S)
        passes = database_sync_to_async(jobs_recover)
        assert (await passes(now=lease_end - dt.timedelta(seconds=0.5)))["reclaimed"] == []
        assert (await fresh(job)).status == JobStatus.RUNNING

        # Not renewed: the next pass after the lease ran out (beat runs every 2 s) requeues it,
        # and it goes out again to the only node, as attempt 2.
        published.clear()
        assert (await passes(now=lease_end + dt.timedelta(seconds=0.5)))["reclaimed"] == [job.pk]
        requeued = await fresh(job)
        assert (requeued.status, requeued.requeues, requeued.node_id) == (JobStatus.QUEUED, 1, node.pk)
        assert [m[3]["job"]["attempt"] for m in published] == [2]

        # The host that lost it reports late: every attempt-1 frame is refused, nothing changes.
        await ws.send_to(bytes_data=audio(job.pk, 1, 0, pcm_of(0.1)))
        assert (await reply(ws))["code"] == "not_your_job"
        assert (await done(ws, job.pk, 1, 4800))["code"] == "not_your_job"
        assert (await reply(ws))["status"] == "refused"
        await ws.send_to(text_data=job_frame(protocol.JOB_START, job_id=job.pk, attempt=1))
        assert (await reply(ws))["code"] == "not_your_job"
        assert (await reply(ws))["ok"] is False
        assert (await fresh(job)).status == JobStatus.QUEUED
        assert (await quota(pro)).reserved == job.tokens  # still held for attempt 2, nothing charged
        assert (await quota(pro)).remaining == full - job.tokens
        # Attempt 2 is the one it may run.
        assert (await claim(ws, job.pk, attempt=2))["ok"] is True


async def test_a_done_for_an_attempt_taken_back_after_its_claim_is_refused_and_writes_nothing(pro, host_a):
    _, token = host_a
    piece = pcm_of(0.2)
    async with v3_host(token) as ws:
        job = await started_job(ws, pro)  # the console read the job at its claim
        await ws.send_to(bytes_data=audio(job.pk, 1, 0, piece))
        assert await wait_for_file(partial_path(job_output_path(job=job)))
        lease_end = (await fresh(job)).lease_expires_at
        reclaimed = await database_sync_to_async(jobs_recover)(now=lease_end + dt.timedelta(seconds=0.5))
        assert reclaimed["reclaimed"] == [job.pk]

        # The claim's copy of the job still says running; the row does not, and answers.
        assert (await done(ws, job.pk, 1, len(piece)))["code"] == "not_your_job"
        assert (await reply(ws))["status"] == "refused"

    requeued = await fresh(job)
    assert (requeued.status, requeued.attempts, requeued.output_path) == (JobStatus.QUEUED, 1, "")
    assert not job_output_path(job=job).exists()  # no WAV of the stale attempt
    held = await quota(pro)
    assert held.reserved == held.used == job.tokens  # still only held, for attempt 2: nothing settled


def test_beat_reclaims_a_lease_within_three_seconds_of_its_end():
    schedule = settings.CELERY_BEAT_SCHEDULE["inference-recover"]
    assert schedule["task"] == "inference.jobs_recover" and float(schedule["schedule"]) <= 3.0


async def test_a_reconnecting_host_keeps_what_it_holds_and_the_rest_is_requeued_at_once(pro, host_a):
    node, token = host_a
    async with v3_host(token) as ws:
        kept, lost, stale = [await accept(pro, text=f"第{n}句话。") for n in "一二三"]
        for job in (kept, lost, stale):
            await claim(ws, job.pk)
        await ws.send_to(bytes_data=audio(kept.pk, 1, 0, pcm_of(0.1)))
        assert await wait_for_file(partial_path(job_output_path(job=kept)))
    # The socket closed with a stream open: its partial audio is gone.
    assert not partial_path(job_output_path(job=kept)).exists()

    async with v3_host(token, jobs=[(kept.pk, 1), (stale.pk, 2)]):
        assert (await fresh(kept)).status == JobStatus.RUNNING
        for job in (lost, stale):  # not held, or held in an attempt that is not its current one
            moved = await fresh(job)
            assert moved.requeues == 1 and moved.status == JobStatus.QUEUED and moved.attempts == 1


async def wait_for_file(path, timeout: float = 10) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not path.exists():
        if loop.time() > end:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_audio_must_be_one_contiguous_stream_or_the_job_fails_uncharged(pro, host_a):
    _, token = host_a
    piece = pcm_of(0.1)
    async with v3_host(token) as ws:
        job = await started_job(ws, pro)
        await ws.send_to(bytes_data=audio(job.pk, 1, 0, piece))
        for offset, rate, what in (
            (len(piece) + 2, RATE, "gap"),
            (0, RATE, "overlap"),
            (len(piece), 16_000, "Hz"),
        ):
            await ws.send_to(bytes_data=audio(job.pk, 1, offset, piece, sample_rate=rate))
            error = await reply(ws)
            assert (error["code"], what in error["message"]) == ("bad_frame", True), error
        # Odd byte counts and oversized frames never reach the stream.
        await ws.send_to(bytes_data=audio(job.pk, 1, len(piece), b"\x00\x01\x02"))
        assert (await reply(ws))["code"] == "bad_frame"
        await ws.send_to(bytes_data=audio(job.pk, 1, len(piece), b"\x00" * protocol.AUDIO_FRAME_MAX))
        assert (await reply(ws))["code"] == "bad_frame"

        # The host claims more audio than the console holds: failed, released, never charged.
        closed = await done(ws, job.pk, 1, 3 * len(piece))
        assert closed["status"] == JobStatus.FAILED
    failed = await fresh(job)
    assert failed.status == JobStatus.FAILED and failed.error_code == "audio_incomplete"
    assert (await quota(pro)).used == 0 and (await quota(pro)).reserved == 0


async def test_audio_has_its_own_byte_budget_outside_the_text_frame_rate(pro, host_a, monkeypatch):
    _, token = host_a
    monkeypatch.setattr(agents, "FRAME_BURST", 6)  # hello, a sample, job frames: this test's text frames
    monkeypatch.setattr(agents, "FRAME_RATE_PER_S", 0.001)
    monkeypatch.setattr(agents, "AUDIO_BURST_BYTES", 64 * 1024)
    monkeypatch.setattr(agents, "AUDIO_BYTES_PER_S", 1.0)
    monkeypatch.setattr(agents, "_frame_rates", {})
    monkeypatch.setattr(agents, "_audio_rates", {})
    piece = pcm_of(0.1)  # 4800 bytes
    async with v3_host(token) as ws:
        job = await started_job(ws, pro)
        # Twelve audio frames: far more frames than the text budget, within the byte budget.
        for n in range(12):
            await ws.send_to(bytes_data=audio(job.pk, 1, n * len(piece), piece))
        stored = partial_path(job_output_path(job=job))
        for _ in range(200):
            if stored.exists() and stored.stat().st_size == 4 + 12 * len(piece):
                break
            await asyncio.sleep(0.02)
        assert stored.stat().st_size == 4 + 12 * len(piece)
        # Past the byte budget: refused and closed, as a flood of text frames is.
        for n in range(12, 20):
            await ws.send_to(bytes_data=audio(job.pk, 1, n * len(piece), piece))
        error = await reply(ws)
        assert error["code"] == "bad_frame" and "bytes/s of audio" in error["message"]
        assert (await ws.receive_output(timeout=5))["code"] == protocol.CLOSE_RATE_LIMITED


async def test_a_v2_agent_cannot_send_job_frames_or_audio(pro, host_a):
    _, token = host_a
    async with ws_connected(AGENT, headers=agent_headers(token)) as ws:
        await ws.send_to(text_data=hello(version=V3 - 1))  # protocol 2
        assert (await reply(ws))["type"] == protocol.WELCOME
        await ws.send_to(text_data=protocol.message_encode(protocol.JOB_START, version=V3 - 1, job_id=1, attempt=1))
        error = await reply(ws)
        assert error["code"] == "bad_frame" and "job frames need protocol 3" in error["message"]
        # A frame that says v3 on a connection whose hello said v2 is refused too.
        await ws.send_to(text_data=job_frame(protocol.JOB_DONE, job_id=1, attempt=1, audio_bytes=2))
        error = await reply(ws)
        assert error["code"] == "bad_frame" and "job frames need a protocol 3 hello" in error["message"]
        await ws.send_to(text_data=sample(1))  # still connected: those refusals were not fatal
        await ws.send_to(bytes_data=audio(1, 1, 0, pcm_of(0.01)))  # not JSON to a v2 console side
        assert (await reply(ws))["code"] == "bad_frame"
        assert (await ws.receive_output(timeout=5))["type"] == "websocket.close"
