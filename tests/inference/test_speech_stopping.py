"""A console process that is asked to stop ends the speech requests still waiting for their
jobs at once (503, nothing charged) instead of holding its shutdown until their deadlines:
a GPU host can only finish such a job over the websocket the stopping server just closed."""

from __future__ import annotations

import asyncio
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from billing.selectors import quota_get
from console import lifecycle
from inference.choices import JobStatus
from inference.errors import JobNotSucceeded
from inference.models import SynthesisJob
from inference.reconcile import books_drift_find
from inference.services import job_create
from inference.services.speech import job_audio_chunks, speech_synthesize
from tests.support.live_server import wait_until


@pytest.fixture
def stoppable():
    lifecycle.stopping_reset()
    yield lifecycle
    lifecycle.stopping_reset()


def _waiting_job(tenant) -> SynthesisJob:
    # No executor runs in this test: the job stays queued, as one whose host cannot report does.
    return wait_until(
        lambda: SynthesisJob.objects.filter(tenant=tenant, status=JobStatus.QUEUED).first(),
        what="the speech request's job, queued",
        timeout_s=30,
    )


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_stopping_ends_a_waiting_speech_request_with_a_503_and_charges_nothing(local_node, owner_tenant, stoppable):
    full = quota_get(tenant=owner_tenant).remaining
    outcome: dict = {}

    def call() -> None:
        try:
            outcome["speech"] = speech_synthesize(tenant=owner_tenant, text="你好，世界", voice="zh-female")
        except JobNotSucceeded as exc:
            outcome["error"] = exc
        finally:
            connections.close_all()  # this thread's connection goes back to the pool

    waiter = threading.Thread(target=call)
    waiter.start()
    job = _waiting_job(owner_tenant)
    assert waiter.is_alive()  # still waiting: the job has two minutes before its deadline
    stoppable.stopping_begin()
    waiter.join(timeout=15)
    assert not waiter.is_alive(), "the waiting request did not end when the process began to stop"
    error = outcome["error"]
    assert (error.status, error.code) == (503, "console_stopping")
    assert "nothing was charged" in error.message
    job.refresh_from_db()
    assert (job.status, job.error_code) == (JobStatus.FAILED, "console_stopping")
    assert quota_get(tenant=owner_tenant).remaining == full
    assert books_drift_find() == []


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
async def test_stopping_ends_a_waiting_audio_stream_the_same_way(local_node, owner_tenant, stoppable):
    # One executor thread for the stream's database reads, so its connection can be closed after.
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
    try:
        job = await sync_to_async(job_create)(tenant=owner_tenant, text="你好，世界", voice="zh-female")
        first_chunk = asyncio.ensure_future(job_audio_chunks(job=job, response_format="wav").__anext__())
        stoppable.stopping_begin()  # the listener sees it within one poll, whenever it started listening
        with pytest.raises(JobNotSucceeded) as raised:
            await asyncio.wait_for(first_chunk, timeout=15)
        assert (raised.value.status, raised.value.code) == (503, "console_stopping")
        await sync_to_async(job.refresh_from_db)()
        assert (job.status, job.error_code) == (JobStatus.FAILED, "console_stopping")
    finally:
        await loop.run_in_executor(None, connections.close_all)
        await sync_to_async(connections.close_all)()


def test_the_chain_runs_before_the_servers_own_handler(stoppable):
    calls = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(lifecycle.is_stopping()))
    previous_int = signal.getsignal(signal.SIGINT)
    try:
        assert lifecycle.stop_signals_chain()
        assert not lifecycle.stop_signals_chain()  # already chained: not wrapped twice
        signal.raise_signal(signal.SIGTERM)
        assert calls == [True]  # the server's handler ran once, after stopping began
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
