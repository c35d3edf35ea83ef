"""A speech request outlives a Redis or PostgreSQL fault once its job runs (found by tests/faults under load).

Redis down: the channel layer fails, and the listener goes on from the job's partial file
(each piece is stored before it is announced) instead of breaking the response (a speech
request answered an HTML 500). PostgreSQL restarted: the stream's reads of the job row wait
the fault out instead of cutting a response already under way ("incomplete chunked read"),
and so does a whole (not streamed) speech request waiting for its job.
"""

from __future__ import annotations

import asyncio

import pytest
from django.db import connection

from inference.selectors import job_wait_finished
from inference.services.speech import _job_finished, _job_reload, _run_here, _waited_out
from inference.streaming import JobAudioWriter, job_audio_listen
from tests.support.live_server import free_port


async def test_with_the_channel_layer_down_a_listener_reads_every_piece_from_the_file(tmp_path, settings):
    # Nothing listens on this port: every layer call fails as while Redis restarts.
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{free_port()}/0"]},
        }
    }
    output = tmp_path / "job.wav"
    writer = JobAudioWriter(job_id=7, output=output, sample_rate=24_000)
    first, second = b"\x01\x00" * 240, b"\x02\x00" * 480
    await asyncio.to_thread(writer.append, first)  # stored; its announcement fails and is logged
    ended = asyncio.Event()

    async def is_finished() -> bool:
        return ended.is_set()

    heard = []
    async for piece in job_audio_listen(job_id=7, output=output, is_finished=is_finished, timeout_s=20, poll_s=0.05):
        heard.append(piece.pcm)
        assert piece.sample_rate == 24_000
        if len(heard) == 1:
            await asyncio.to_thread(writer.append, second)  # produced while the listener waits
        else:
            ended.set()  # the job row says it ended: the listener stops at its next look
    assert b"".join(heard) == first + second


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL connection closed under the stream")
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_streams_read_of_its_job_waits_out_a_connection_closed_by_a_restart(make_tenant, run_job):
    job = run_job(make_tenant("pro"))
    connection.ensure_connection()
    connection.connection.close()  # what a PostgreSQL restart leaves in this thread: "the connection is closed"
    assert _job_reload(job.pk).pk == job.pk
    connection.connection.close()
    assert _job_finished(job.pk) is True


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL connection closed under the wait")
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_whole_speech_waits_out_a_connection_closed_while_it_waits_for_its_job(make_tenant, run_job):
    # "stream": false answered 503 "nothing was charged" on a PostgreSQL stop while its job
    # went on and was settled: the client was charged for audio it never got.
    job = run_job(make_tenant("pro"))
    connection.ensure_connection()
    connection.connection.close()
    assert job_wait_finished(job_id=job.pk, timeout_s=5, run=_waited_out(_run_here)).is_finished


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL connection closed after the commit")
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_an_accepted_jobs_answer_waits_out_a_connection_closed_after_its_commit(make_tenant, local_node):
    # The jobs API answered 503 "nothing was charged" when PostgreSQL stopped between the
    # job's commit and the read of its answer, while the job ran and was charged (tests/faults).
    from inference.services import job_accepted_read, job_create

    job = job_create(tenant=make_tenant("pro"), text="你好，世界", voice="zh-female", seed=7)
    connection.ensure_connection()
    connection.connection.close()  # what a PostgreSQL stop leaves in this thread
    read = job_accepted_read(job_id=job.pk)
    assert (read.pk, read.status, read.node.name) == (job.pk, "queued", local_node.name)
