"""A running job's audio, delivered while it is produced.

The producer (whoever receives the engine's pieces: the node's worker, or the console on a
node's behalf) appends each piece as 16-bit PCM to the job's partial file and then announces
it on the channel-layer group ``job-audio.<id>`` with its byte offset. A listener joins the
group first, then reads what the partial file already holds, then takes announced pieces
past that offset — so it misses nothing whenever it starts (the speech call that created the
job, or a jobs-API client that asks for a running job's audio) and never gets a byte twice.
The end of the stream is announced after the job has been settled or closed.

The partial file is ``<output>.pcm.part``: a 4-byte little-endian sample rate, then PCM.
It is removed once the finished WAV is in place.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from console.lifecycle import is_stopping
from inference.audio.encode import pcm16 as pcm16  # the engine layer's conversion, named here for producers

logger = logging.getLogger(__name__)

AUDIO = "job.audio"
END = "job.audio.end"
_RATE_HEADER = struct.Struct("<I")


# The event loop that owns the in-memory channel layer (the embedded default's one ASGI
# process). Its queues are not thread-safe: producers on other threads hand their sends to
# that loop instead of running them on a loop of their own.
_layer_loop: asyncio.AbstractEventLoop | None = None


def layer_loop_register(loop: asyncio.AbstractEventLoop | None) -> None:
    global _layer_loop
    _layer_loop = loop


def _group_send(group: str, message: dict) -> None:
    layer = get_channel_layer()
    loop = _layer_loop
    if loop is not None and loop.is_running():
        asyncio.run_coroutine_threadsafe(layer.group_send(group, message), loop).result(timeout=10)
    else:
        async_to_sync(layer.group_send)(group, message)


def job_audio_group(job_id: int) -> str:
    return f"job-audio.{int(job_id)}"


def partial_path(output: Path) -> Path:
    return output.with_name(output.name + ".pcm.part")


class JobAudioWriter:
    """Producer side of one job attempt's stream (not thread-safe: one writer per attempt)."""

    def __init__(self, *, job_id: int, output: Path, sample_rate: int) -> None:
        self.job_id = job_id
        self.output = output
        self.sample_rate = int(sample_rate)
        self.path = partial_path(output)
        self.offset = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A new attempt starts over: a listener that read an earlier attempt's bytes is told
        # by the offsets going back to 0 (it then waits for the end and the finished file).
        with open(self.path, "wb") as handle:
            handle.write(_RATE_HEADER.pack(self.sample_rate))

    def append(self, pcm: bytes) -> None:
        """Store the piece, then announce it (stored first: a late listener reads it from disk)."""
        if pcm:
            self._send(self._store(pcm))

    async def append_async(self, pcm: bytes, *, announcer: Announcer) -> None:
        """``append`` from the event loop (a GPU host's pieces arrive on the console's websocket):
        stored now, announced by ``announcer`` in the background."""
        if not pcm:
            return
        message = await asyncio.to_thread(self._store, pcm)
        announcer.send(job_audio_group(self.job_id), message)

    def _store(self, pcm: bytes) -> dict:
        with open(self.path, "ab") as handle:
            handle.write(pcm)
            handle.flush()
        offset, self.offset = self.offset, self.offset + len(pcm)
        return {"type": AUDIO, "offset": offset, "data": pcm, "sample_rate": self.sample_rate}

    def holds_exactly(self, pcm_bytes: int) -> bool:
        """Whether the partial file holds ``pcm_bytes`` of PCM, as this writer wrote it (no one else did)."""
        try:
            return self.offset == pcm_bytes and self.path.stat().st_size == _RATE_HEADER.size + pcm_bytes
        except FileNotFoundError:
            return False

    def wav_bytes(self) -> bytes:
        """The finished stream as a WAV file (the job's output)."""
        from inference.audio.encode import wav_header

        with open(self.path, "rb") as handle:
            handle.seek(_RATE_HEADER.size)
            pcm = handle.read()
        return wav_header(sample_rate=self.sample_rate, data_bytes=len(pcm)) + pcm

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)

    def _send(self, message: dict) -> None:
        try:
            _group_send(job_audio_group(self.job_id), message)
        except Exception:  # noqa: BLE001 - listeners fall back to the file and the job row
            logger.warning("could not announce audio of job %s", self.job_id, exc_info=True)


class Announcer:
    """Announces stored pieces on the channel layer in order, without holding up whoever stored
    them (a host's next frame, its job_done). At most ``limit`` wait; past that an announcement
    is dropped, which costs a listener nothing (a gap in the offsets sends it to the file). The
    end of a job may overtake pieces still waiting here: the listener then takes the rest from
    the finished file. One per producer on one event loop; not thread-safe."""

    def __init__(self, *, limit: int = 64) -> None:
        self.limit = limit
        self._waiting: deque[tuple[str, dict]] = deque()
        self._task: asyncio.Task | None = None

    def send(self, group: str, message: dict) -> None:
        if len(self._waiting) >= self.limit:
            logger.warning("announcements of %s are behind; one dropped (listeners read the file)", group)
            return
        self._waiting.append((group, message))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        layer = get_channel_layer()
        while self._waiting:
            group, message = self._waiting.popleft()
            try:
                await layer.group_send(group, message)
            except Exception:  # noqa: BLE001 - listeners fall back to the file and the job row
                logger.warning("could not announce on %s", group, exc_info=True)


def job_audio_end(*, job_id: int, ended: dict | None = None) -> None:
    """Tell listeners the job is over (after its settlement or release is committed); ``ended``
    says how, for a listener that would otherwise read the job back (``job_audio_listen``)."""
    try:
        _group_send(job_audio_group(job_id), {"type": END, "ended": ended or {}})
    except Exception:  # noqa: BLE001 - listeners also poll the job row
        logger.warning("could not announce the end of job %s", job_id, exc_info=True)


@dataclass
class AudioPiece:
    """PCM bytes of a stream, with their sample rate."""

    pcm: bytes
    sample_rate: int


def _read_partial(path: Path, offset: int) -> tuple[int | None, bytes]:
    try:
        with open(path, "rb") as handle:
            header = handle.read(_RATE_HEADER.size)
            if len(header) < _RATE_HEADER.size:
                return None, b""
            handle.seek(_RATE_HEADER.size + offset)
            return _RATE_HEADER.unpack(header)[0], handle.read()
    except FileNotFoundError:
        return None, b""


async def job_audio_listen(
    *,
    job_id: int,
    output: Path,
    is_finished: Callable[[], Awaitable[bool]],
    timeout_s: float,
    poll_s: float = 1.0,
    ended: dict | None = None,
) -> AsyncIterator[AudioPiece]:
    """Yield the job's audio as it is produced until the job ends (or ``timeout_s`` passes).

    When the end is announced, what it says of the job's end (``job_audio_end``: its status,
    output and tokens, for a job settled with its audio) is put in ``ended``; it stays empty
    when the listener stopped otherwise.

    ``is_finished`` reads the job row; it is asked when the group is quiet for ``poll_s``
    (a lost end message, a node that died) so the listener never waits past the job. When
    the channel layer fails (Redis restarting) the listener goes on without it: it reads
    the partial file every ``poll_s`` (every piece is stored before it is announced) until
    the job row says the job ended, so a stream outlives a Redis fault instead of breaking.
    """
    layer = get_channel_layer()
    group = job_audio_group(job_id)
    channel: str | None = None
    try:
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
    except Exception as exc:  # noqa: BLE001 - any layer failure: the file and the job row suffice
        channel = _layer_lost(job_id, exc)
    path = partial_path(output)
    offset = 0
    deadline = time.monotonic() + timeout_s
    try:
        rate, data = await asyncio.to_thread(_read_partial, path, 0)
        if data:
            offset = len(data)
            yield AudioPiece(pcm=data, sample_rate=rate)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or is_stopping():  # the process stops: the caller ends the job
                return
            if channel is None:
                await asyncio.sleep(min(poll_s, remaining))
                rate, data = await asyncio.to_thread(_read_partial, path, offset)
                if data:
                    offset += len(data)
                    yield AudioPiece(pcm=data, sample_rate=rate)
                elif await is_finished():
                    return
                continue
            try:
                message = await asyncio.wait_for(layer.receive(channel), timeout=min(poll_s, remaining))
            except TimeoutError:
                if await is_finished():
                    return
                continue
            except Exception as exc:  # noqa: BLE001 - as above
                channel = _layer_lost(job_id, exc)
                continue
            if message.get("type") == END:
                if ended is not None:
                    ended.update(message.get("ended") or {})
                return
            start, chunk = int(message["offset"]), message["data"]
            if start > offset:
                # Announcements were missed (layer capacity): the file has everything.
                rate, data = await asyncio.to_thread(_read_partial, path, offset)
                if data:
                    offset += len(data)
                    yield AudioPiece(pcm=data, sample_rate=rate)
                continue
            fresh = chunk[offset - start :]
            if fresh:
                offset += len(fresh)
                yield AudioPiece(pcm=fresh, sample_rate=int(message["sample_rate"]))
    finally:
        if channel is not None:
            try:
                await layer.group_discard(group, channel)
            except Exception:  # noqa: BLE001 - the group's expiry forgets the channel
                logger.warning("could not leave %s", group, exc_info=True)


def _layer_lost(job_id: int, exc: Exception) -> None:
    logger.warning("channel layer failed while streaming job %s (%s): reading its file instead", job_id, exc)
    return None


def final_pcm(output: str | Path, skip_bytes: int = 0) -> tuple[int, bytes]:
    """(sample rate, 16-bit PCM after the first ``skip_bytes``) of a finished job's WAV."""
    import soundfile

    with soundfile.SoundFile(str(output)) as wav:
        rate = wav.samplerate
        wav.seek(min(wav.frames, skip_bytes // 2))
        return rate, wav.read(dtype="int16").astype("<i2").tobytes()


def replace_into(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a reader sees the old file or the whole new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
