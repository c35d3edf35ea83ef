"""Speech: a synthesis request answered synchronously (the OpenAI-compatible endpoint).

It runs as a job on a node like any other (queue -> node -> engine), so it is metered,
routed and recorded the same way; ``speech_synthesize`` accepts it, waits for it until
its deadline, gives it up (releasing the tokens) when it is late, and returns the audio or
raises the typed error for how the job ended.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from django.utils import timezone

from inference.choices import JobSource, JobStatus
from inference.errors import JobCancelled, JobFailed, JobNotSucceeded, JobTimedOut
from inference.selectors import job_audio_read, job_wait_finished
from inference.services.jobs import job_create, job_fail

if TYPE_CHECKING:
    from inference.models import SynthesisJob

T = TypeVar("T")

# Job error codes that mean "the fleet could not run it" (retry later) rather than "it broke".
_UNAVAILABLE_CODES = ("no_node_available", "node_lost", "dispatch_failed")
TIMED_OUT_MESSAGE = "The job did not finish in time; nothing was charged."


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


def speech_synthesize(
    *,
    tenant,
    text,
    voice,
    instruction=None,
    seed=None,
    speed=None,
    response_format: str = "wav",
    idempotency_key: str | None = None,
    api_key=None,
    source: str = JobSource.OPENAI,
    run: Callable | None = None,
) -> Speech:
    """Accept the request as a job, wait for it, and return its audio (``wav`` or ``pcm``).

    Refusals at acceptance are ``job_create``'s (nothing reserved). A job that ends without
    audio raises a ``JobNotSucceeded`` carrying its id: ``JobCancelled`` (409),
    ``JobTimedOut`` (504: not finished by its deadline; failed here so its tokens are
    released and a late result is discarded) or ``JobFailed`` (503 when the fleet could not
    run it, else 500). ``run(fn, *args, **kwargs)`` executes each database step (the speech
    endpoint passes its long-lived database threads); by default they run in this thread.
    """
    run = run or _run_here
    job = run(
        job_create,
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
    remaining = max(0.0, (job.deadline_at - timezone.now()).total_seconds())
    job = job_wait_finished(job_id=job.pk, timeout_s=remaining, run=run)
    if not job.is_finished:
        run(job_fail, job=job, code="job_timed_out", message=TIMED_OUT_MESSAGE)
        run(job.refresh_from_db)
    if job.status != JobStatus.SUCCEEDED:
        raise _job_error(job)
    audio = job_audio_read(job=job, response_format=response_format)
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
