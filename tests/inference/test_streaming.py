"""A running job's audio on the channel layer (inference.streaming): announcements and the end.

The in-memory layer here (the embedded default's); tests/console/consumers/test_host_jobs.py
drives the same parts through a v3 host's websocket on whatever layer the suite runs with.
"""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import get_channel_layer

from inference.streaming import AUDIO, Announcer, JobAudioWriter, job_audio_end, job_audio_group, job_audio_listen

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def layer(settings):
    settings.CHANNEL_LAYERS = IN_MEMORY
    return get_channel_layer()


async def _listening(layer, job_id: int) -> str:
    channel = await layer.new_channel()
    await layer.group_add(job_audio_group(job_id), channel)
    return channel


async def test_the_announcer_keeps_the_order_and_drops_what_waits_past_its_limit(layer):
    channel = await _listening(layer, 3)
    announcer = Announcer(limit=2)
    # Five pieces stored back to back (nothing yields to the loop in between): two wait to go
    # out, the other three are dropped rather than held in memory behind a slow layer.
    for offset in range(5):
        announcer.send(job_audio_group(3), {"type": AUDIO, "offset": offset, "data": b"", "sample_rate": 24_000})
    heard = [await asyncio.wait_for(layer.receive(channel), timeout=5) for _ in range(2)]
    assert [message["offset"] for message in heard] == [0, 1]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive(channel), timeout=0.2)
    # Once it caught up it takes the next ones again, in order.
    for offset in (5, 6):
        announcer.send(job_audio_group(3), {"type": AUDIO, "offset": offset, "data": b"", "sample_rate": 24_000})
    assert [(await asyncio.wait_for(layer.receive(channel), timeout=5))["offset"] for _ in range(2)] == [5, 6]


async def test_a_listener_hears_how_the_job_ended_from_its_end_announcement(layer, tmp_path):
    output = tmp_path / "job.wav"
    writer = JobAudioWriter(job_id=9, output=output, sample_rate=24_000)
    piece = b"\x01\x00" * 480
    ended: dict = {}
    heard: list[bytes] = []

    async def is_finished() -> bool:
        return False  # only the end announcement stops this listener

    async def listen() -> None:
        async for audio in job_audio_listen(
            job_id=9, output=output, is_finished=is_finished, timeout_s=20, ended=ended
        ):
            heard.append(audio.pcm)

    listening = asyncio.create_task(listen())
    while not layer.groups.get(job_audio_group(9)):
        await asyncio.sleep(0.01)  # joined the group
    await writer.append_async(piece, announcer=Announcer())
    outcome = {"status": "succeeded", "output_path": str(output), "tokens": 12, "audio_bytes": len(piece)}
    await asyncio.to_thread(job_audio_end, job_id=9, ended=outcome)
    await asyncio.wait_for(listening, timeout=10)
    assert heard == [piece] and ended == outcome
