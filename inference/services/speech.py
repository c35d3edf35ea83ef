"""Speech: a synthesis request answered while the client waits (the OpenAI-compatible endpoint).

It runs as a job on a node like any other (queue -> node -> engine), so it is metered,
routed and recorded the same way. ``speech_accept`` makes it a job; ``speech_job_stream`` hands
back its audio as the node produces it, encoded on the fly (``stream_format`` audio or sse), and
``speech_audio`` waits for the whole job and returns one body (``speech_stream`` and
``speech_synthesize`` do both steps). Both give the job up (releasing the tokens) when it is
late and raise the typed error for how a job ended without audio.

Charging a stream: the tokens are reserved at acceptance and settled when the job succeeds.
A client that disconnects before the stream ends pays nothing: its job is cancelled, the
reservation released, and the node stops at the next sentence (never more than the audio
produced, nothing left reserved). The audio it did produce is not kept.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.utils import timezone

from console.lifecycle import is_stopping
from inference.audio.encode import FORMATS, OUTPUT_RATE, StreamEncoder, pcm16_floats
from inference.choices import JobSource, JobStatus
from inference.errors import JobCancelled, JobFailed, JobNotCancellable, JobNotSucceeded, JobTimedOut
from inference.selectors import job_audio_read, job_wait_finished
from inference.services.dispatch import _db_retry, job_output_path
from inference.services.jobs import job_cancel, job_create, job_fail
from inference.streaming import final_pcm, job_audio_listen

if TYPE_CHECKING:
    from inference.models import SynthesisJob

T = TypeVar("T")

# Job error codes that mean "the fleet could not run it" (retry later) rather than "it broke".
_UNAVAILABLE_CODES = ("no_node_available", "node_lost", "dispatch_failed", "console_stopping")
TIMED_OUT_MESSAGE = "The job did not finish in time; nothing was charged."
STOPPING_MESSAGE = "The console restarted before the job finished; nothing was charged. Retry shortly."


def _unfinished_end() -> dict:
    """How a job still open when its request stops waiting is failed: this process is stopping
    (console.lifecycle: a 503 to retry) or the job ran past its deadline (504)."""
    if is_stopping():
        return {"code": "console_stopping", "message": STOPPING_MESSAGE}
    return {"code": "job_timed_out", "message": TIMED_OUT_MESSAGE}


@dataclass(frozen=True)
class Speech:
    """The audio of a succeeded job, with what the caller reports about it."""

    content: bytes
    content_type: str
    sample_rate: int
    job_id: int
    tokens: int
    seed: int
    engine_version: str


def _run_here(fn: Callable[..., T], *args, **kwargs) -> T:
    return fn(*args, **kwargs)


def _waited_out(run: Callable) -> Callable:
    """``run`` with each call retried through a database fault (``_db_retry``: a fresh connection)."""
    return lambda fn, *args, **kwargs: run(_db_retry, lambda: fn(*args, **kwargs))


def speech_accept(
    *,
    tenant,
    text,
    voice,
    instruction=None,
    seed=None,
    speed=None,
    idempotency_key: str | None = None,
    api_key=None,
    source: str = JobSource.OPENAI,
) -> SynthesisJob:
    """A speech request accepted as a job (``job_create``: its refusals reserve nothing)."""
    return job_create(
        tenant=tenant,
        text=text,
        voice=voice,
        instruction=instruction,
        seed=seed,
        speed=speed,
        idempotency_key=idempotency_key,
        source=source,
        api_key=api_key,
    )


def speech_synthesize(*, response_format: str = "wav", run: Callable | None = None, **request) -> Speech:
    """Accept the request as a job (``speech_accept``'s arguments), wait for it, and return its
    audio (``speech_audio``). ``run(fn, *args, **kwargs)`` executes each database step (the
    speech endpoint passes its long-lived database threads); by default they run in this thread."""
    run = run or _run_here
    return speech_audio(job=run(speech_accept, **request), response_format=response_format, run=run)


def speech_audio(*, job: SynthesisJob, response_format: str = "wav", run: Callable | None = None) -> Speech:
    """Wait for an accepted speech job and return its audio in ``response_format`` (any of
    ``inference.audio.encode.FORMATS``, at 24 kHz).

    A job that ends without audio raises a ``JobNotSucceeded`` carrying its id: ``JobCancelled``
    (409), ``JobTimedOut`` (504: not finished by its deadline; failed here so its tokens are
    released and a late result is discarded) or ``JobFailed`` (503 when the fleet could not
    run it, else 500). ``run`` executes each database step, as for ``speech_synthesize``.
    """
    run = run or _run_here
    # Accepted: its tokens are held and a node runs it, so from here a database fault is
    # waited out; a 503 now would leave the client without the audio it is then charged for.
    waited = _waited_out(run)
    remaining = max(0.0, (job.deadline_at - timezone.now()).total_seconds())
    job = job_wait_finished(job_id=job.pk, timeout_s=remaining, run=waited)
    if not job.is_finished:
        waited(job_fail, job=job, **_unfinished_end())
        waited(job.refresh_from_db)
    if job.status != JobStatus.SUCCEEDED:
        raise _job_error(job)
    audio = job_audio_read(job=job, response_format=response_format, stored_wav=False)
    return Speech(
        content=audio.content,
        content_type=audio.content_type,
        sample_rate=audio.sample_rate,
        job_id=job.pk,
        tokens=job.tokens,
        seed=job.seed,
        engine_version=job.engine_version,
    )


def _job_error(job: SynthesisJob) -> JobNotSucceeded:
    if job.status == JobStatus.CANCELLED:
        return JobCancelled(f"Job {job.pk} was cancelled; nothing was charged.", job_id=job.pk)
    if job.error_code == "job_timed_out":
        return JobTimedOut(job.error or TIMED_OUT_MESSAGE, job_id=job.pk)
    return JobFailed(
        f"{job.error or 'Synthesis failed.'} Nothing was charged.",
        code=job.error_code or "synthesis_failed",
        status=503 if job.error_code in _UNAVAILABLE_CODES else 500,
        job_id=job.pk,
    )


@dataclass
class SpeechStream:
    """A speech response still being synthesized; its first bytes are already in ``chunks``."""

    chunks: AsyncIterator[bytes]
    content_type: str
    sample_rate: int
    job_id: int
    tokens: int
    seed: int


def speech_stream(
    *, response_format: str = "mp3", sse: bool = False, run: Callable | None = None, **request
) -> SpeechStream:
    """Accept the request as a job (``speech_accept``'s arguments) and return its audio as it is
    produced (``speech_job_stream``)."""
    job = (run or _run_here)(speech_accept, **request)
    return speech_job_stream(job=job, response_format=response_format, sse=sse)


def speech_job_stream(*, job: SynthesisJob, response_format: str = "mp3", sse: bool = False) -> SpeechStream:
    """An accepted speech job's audio as it is produced; the client hanging up cancels the job.

    Returns once the first audio is ready, so a job that ends without any (no node, engine
    error, timeout) still raises its ``JobNotSucceeded`` before a response has started.
    Call from a synchronous view under ASGI: the stream is read on the server's event loop.
    """
    return SpeechStream(
        chunks=_primed(job_audio_chunks(job=job, response_format=response_format, sse=sse, cancel_on_disconnect=True)),
        content_type="text/event-stream" if sse else FORMATS[response_format].content_type,
        sample_rate=OUTPUT_RATE,
        job_id=job.pk,
        tokens=job.tokens,
        seed=job.seed,
    )


def job_audio_stream(*, job, response_format: str) -> SpeechStream:
    """A job's audio while it runs (the jobs API): the reader hanging up does not cancel it."""
    return SpeechStream(
        chunks=_primed(job_audio_chunks(job=job, response_format=response_format)),
        content_type=FORMATS[response_format].content_type,
        sample_rate=OUTPUT_RATE,
        job_id=job.pk,
        tokens=job.tokens,
        seed=job.seed,
    )


def _primed(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Wait (on the event loop) for the first bytes, so an error before any audio can still
    be an error response; then hand back the whole stream."""

    async def first() -> bytes:
        return await chunks.__anext__()

    return _prepend(async_to_sync(first)(), chunks)


async def _prepend(head: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        yield head
        async for chunk in rest:
            yield chunk
    finally:
        await rest.aclose()


def _job_reload(job_id: int) -> SynthesisJob:
    """The job row, for a stream already under way: a database fault (PostgreSQL restarting)
    is waited out, since once audio has started no error answer can be sent, only a cut."""
    from inference.models import SynthesisJob

    return _db_retry(lambda: SynthesisJob.objects.select_related("tenant__plan").get(pk=job_id))


def _job_finished(job_id: int) -> bool:
    return _job_reload(job_id).is_finished


def _job_abandon(job_id: int) -> None:
    job = _job_reload(job_id)
    if not job.is_finished:
        try:
            job_cancel(job=job, reason="the client disconnected before the stream ended; nothing was charged")
        except JobNotCancellable:
            pass  # it finished between the read and the cancel: it stands as it ended


@dataclass(frozen=True)
class _Settled:
    """A succeeded job as its end was announced (``inference.streaming.job_audio_end``): what the
    end of a stream needs of it. ``audio_bytes`` is None when the announcement did not count them."""

    output_path: str
    tokens: int
    audio_bytes: int | None
    status: str = JobStatus.SUCCEEDED
    is_finished: bool = True

    @classmethod
    def announced(cls, ended: dict) -> _Settled | None:
        if ended.get("status") != JobStatus.SUCCEEDED or not ended.get("output_path"):
            return None
        return cls(output_path=ended["output_path"], tokens=int(ended["tokens"]), audio_bytes=ended.get("audio_bytes"))


def _sse(event: dict) -> bytes:
    return f"data: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


async def job_audio_chunks(
    *, job, response_format: str, sse: bool = False, cancel_on_disconnect: bool = False
) -> AsyncIterator[bytes]:
    """A job's audio in ``response_format`` while it is produced, then its tail from the stored file.

    Plain: encoded bytes. ``sse``: OpenAI's ``speech.audio.delta`` events (base64 audio) and a
    closing ``speech.audio.done`` with usage. A job that ends without audio raises its
    ``JobNotSucceeded`` (in SSE after audio has started, an ``error`` event instead). With
    ``cancel_on_disconnect`` a reader that stops early cancels the job (see the module docstring).
    """
    read = database_sync_to_async(_job_reload, thread_sensitive=False)
    output = job_output_path(job=job)
    encoder: StreamEncoder | None = None
    received = 0
    sent_any = False
    ended = False

    def frame(data: bytes) -> bytes:
        if not sse:
            return data
        return _sse({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode("ascii")})

    def encode(pcm: bytes, rate: int) -> bytes:
        nonlocal encoder
        if encoder is None:
            encoder = StreamEncoder(response_format, input_rate=rate)
        return encoder.feed(pcm16_floats(pcm))

    try:
        remaining = max(0.0, (job.deadline_at - timezone.now()).total_seconds())
        announced: dict = {}
        async for piece in job_audio_listen(
            job_id=job.pk,
            output=output,
            is_finished=lambda: database_sync_to_async(_job_finished, thread_sensitive=False)(job.pk),
            timeout_s=remaining,
            ended=announced,
        ):
            received += len(piece.pcm)
            data = encode(piece.pcm, piece.sample_rate)
            if data:
                sent_any = True
                yield frame(data)
        # Settled with its audio, as announced at its end: no need to read the job back.
        settled = _Settled.announced(announced)
        final = settled or await read(job.pk)
        if not final.is_finished:
            await database_sync_to_async(job_fail, thread_sensitive=False)(job=final, **_unfinished_end())
            final = await read(job.pk)
        if final.status != JobStatus.SUCCEEDED:
            ended = True
            error = _job_error(final)
            if sse and sent_any:
                yield _sse({"type": "error", "error": {"message": error.message, "code": error.code}})
                return
            raise error
        # Whatever the stream did not carry (it started after the node finished) is in the WAV.
        rate, rest = (OUTPUT_RATE, b"")
        if encoder is None or settled is None or received != settled.audio_bytes:
            rate, rest = await asyncio.to_thread(final_pcm, final.output_path, received)
        if rest:
            data = encode(rest, rate)
            if data:
                yield frame(data)
        if encoder is None:
            encoder = StreamEncoder(response_format, input_rate=rate or OUTPUT_RATE)
        ended = True
        tail = encoder.finish()
        if tail:
            yield frame(tail)
        if sse:
            usage = {"input_tokens": final.tokens, "output_tokens": 0, "total_tokens": final.tokens}
            yield _sse({"type": "speech.audio.done", "usage": usage})
    finally:
        if not ended and cancel_on_disconnect:
            await asyncio.shield(database_sync_to_async(_job_abandon, thread_sensitive=False)(job.pk))
