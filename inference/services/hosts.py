"""Jobs run by GPU hosts that hold no database (agent protocol v3, ``fleetagent.protocol``).

The host asks to run a job it got from its queue (``host_job_start``: the conditional claim,
queued -> running, leased for LEASE_S), renews its leases (``host_job_renew``), streams the
audio on its websocket (``HostAudio``: one ``JobAudioWriter`` per job attempt, so listeners
hear it live, exactly as with the in-process executor) and reports the end: ``host_job_done``
writes the WAV and settles, ``host_job_fail`` releases — through the same conditional UPDATEs
naming node and attempt as the executor (``.dispatch``), so a late, duplicate or foreign report
is never charged. A node reports only on its own jobs in their current attempt: anything else
raises ``NotYourJob`` and changes nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.db import Error as DatabaseError
from django.db.models import Q
from django.utils import timezone

from console.errors import VoxfleetError
from fleetagent import protocol
from fleetagent.frames import AudioFrame
from inference.choices import JobStatus
from inference.errors import NotYourJob
from inference.models import SynthesisJob
from inference.services.dispatch import _job_attempt_fail, _job_attempt_succeed, job_output_path
from inference.streaming import Announcer, JobAudioWriter, replace_into

logger = logging.getLogger(__name__)

# What the console answers a job_done/job_fail with (job_closed's status): the report closed the
# job as asked (or an identical earlier one did), or it was not taken (the job had ended otherwise).
CLOSED_SUCCEEDED = JobStatus.SUCCEEDED
CLOSED_FAILED = JobStatus.FAILED
CLOSED_REFUSED = "refused"
# A stream's job is read again this often while its audio arrives: a job cancelled (or moved)
# meanwhile stops being written within a second, as the executor stops between sentences.
AUDIO_RECHECK_S = 1.0


class AudioRefused(VoxfleetError):
    """An audio frame that does not continue its job's stream (a gap, an overlap, another rate)."""

    code = "bad_frame"


class JobClosed(VoxfleetError):
    """The job of a stream ended while its host still sent audio (cancelled, expired)."""

    code = "job_closed"

    def __init__(self, message: str, *, job_id: int, attempt: int) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.attempt = attempt


@dataclass(frozen=True)
class HostClaim:
    """The console's answer to a job_start: ``ok`` (run it) or why not (``reason``)."""

    ok: bool
    reason: str = ""


def _not_yours(*, node_id: int, job_id: int, attempt: int) -> NotYourJob:
    logger.warning(
        "node %s reported on job %s attempt %s, which is not running on it in that attempt", node_id, job_id, attempt
    )
    return NotYourJob(f"Job {job_id} is not running on this node in attempt {attempt}.", job_id=job_id, attempt=attempt)


def _job_reported(*, node_id: int, job_id: int, attempt: int) -> SynthesisJob:
    """The job a report names, if it is this node's in that attempt (running, or ended since); else
    NotYourJob. A job taken back and waiting for its next attempt (queued again) is no longer the
    reported attempt's either."""
    job = SynthesisJob.objects.select_related("tenant__plan", "node").filter(pk=job_id).first()
    if (
        job is None
        or job.node_id != node_id
        or job.attempts != attempt
        or job.status in (JobStatus.ACCEPTED, JobStatus.QUEUED)
    ):
        raise _not_yours(node_id=node_id, job_id=job_id, attempt=attempt)
    return job


def _lease_until(now: dt.datetime) -> dt.datetime:
    return now + dt.timedelta(seconds=protocol.LEASE_S)


def host_job_start(*, node_id: int, job_id: int, attempt: int, now: dt.datetime | None = None) -> HostClaim:
    """Claim a job queued on this node for ``attempt`` (the one after the job's last): running, leased."""
    now = now or timezone.now()
    claimed = SynthesisJob.objects.filter(
        pk=job_id, status=JobStatus.QUEUED, node_id=node_id, attempts=attempt - 1, deadline_at__gt=now
    ).update(status=JobStatus.RUNNING, attempts=attempt, started_at=now, lease_expires_at=_lease_until(now))
    if claimed == 1:
        return HostClaim(ok=True)
    row = SynthesisJob.objects.filter(pk=job_id).values("node_id", "status", "attempts", "deadline_at").first()
    if row is None or row["node_id"] != node_id:
        raise _not_yours(node_id=node_id, job_id=job_id, attempt=attempt)
    if row["status"] == JobStatus.RUNNING and row["attempts"] == attempt:
        # A second message for the same attempt (a republished job): one run is enough.
        return HostClaim(ok=False, reason="already_running")
    if row["attempts"] != attempt - 1:
        raise _not_yours(node_id=node_id, job_id=job_id, attempt=attempt)
    if row["status"] == JobStatus.QUEUED:
        return HostClaim(ok=False, reason="past_deadline")
    return HostClaim(ok=False, reason=row["status"])


@dataclass
class HostRenewal:
    """What a job_renew did not renew: jobs that ended meanwhile (the host drops them) and others' jobs."""

    closed: list[tuple[int, int]]
    not_yours: list[NotYourJob]


def host_job_renew(*, node_id: int, jobs, now: dt.datetime | None = None) -> HostRenewal:
    """Extend the leases of ``jobs`` ([job_id, attempt] pairs) running on this node, in one UPDATE."""
    now = now or timezone.now()
    pairs = {(int(job_id), int(attempt)) for job_id, attempt in jobs}
    if not pairs:
        return HostRenewal(closed=[], not_yours=[])
    by_attempt: dict[int, list[int]] = defaultdict(list)
    for job_id, attempt in pairs:
        by_attempt[attempt].append(job_id)
    # One term per distinct attempt (a handful), not per job: SQLite caps an expression's depth.
    held = Q()
    for attempt, ids in by_attempt.items():
        held |= Q(attempts=attempt, pk__in=ids)
    renewed = SynthesisJob.objects.filter(held, node_id=node_id, status=JobStatus.RUNNING).update(
        lease_expires_at=_lease_until(now)
    )
    if renewed == len(pairs):
        return HostRenewal(closed=[], not_yours=[])
    rows = {
        pk: (node, status, attempts)
        for pk, node, status, attempts in SynthesisJob.objects.filter(pk__in=[j for j, _ in pairs]).values_list(
            "pk", "node_id", "status", "attempts"
        )
    }
    outcome = HostRenewal(closed=[], not_yours=[])
    for job_id, attempt in sorted(pairs):
        node, status, attempts = rows.get(job_id, (None, None, None))
        if node == node_id and attempts == attempt and status not in (JobStatus.ACCEPTED, JobStatus.QUEUED):
            if status != JobStatus.RUNNING:
                outcome.closed.append((job_id, attempt))
        else:
            outcome.not_yours.append(_not_yours(node_id=node_id, job_id=job_id, attempt=attempt))
    return outcome


def _closed_as(job: SynthesisJob, asked: str) -> str:
    """The answer to a report on a job that is no longer running: what was asked, if that is how it ended."""
    return asked if job.status == asked else CLOSED_REFUSED


def _started_perf(job: SynthesisJob) -> float:
    """The job's start on the perf_counter clock (job listeners get its duration)."""
    if job.started_at is None:
        return time.perf_counter()
    return time.perf_counter() - max(0.0, (timezone.now() - job.started_at).total_seconds())


def host_job_done(
    *,
    node_id: int,
    job_id: int,
    attempt: int,
    writer: JobAudioWriter | None,
    audio_bytes: int,
    gpu_seconds: float,
    audio_seconds: float,
    engine_version: str,
    claimed: SynthesisJob | None = None,
) -> str:
    """All audio of the attempt was sent: write the WAV and settle; the job_closed status.

    ``writer`` holds what the console received. A count that differs from the host's (a frame
    lost or refused) fails the job, tokens released: the console never charges for audio it
    does not hold whole. A duplicate job_done finds the job closed and changes nothing.
    ``claimed`` is the job as read when this connection claimed it (``host_job_claimed``): while
    the row says it still runs here in that attempt (one indexed lookup), it spares reading the
    job again; otherwise the report is answered from the row as without it. Who may settle is
    decided by the conditional UPDATE naming node, attempt and ``running`` either way.
    """
    ids = {"node_id": node_id, "job_id": job_id, "attempt": attempt}
    if claimed is not None and not host_job_running(**ids):
        claimed = None  # ended or taken back since its claim: the row says how
    job = claimed if claimed is not None else _job_reported(**ids)
    if job.status != JobStatus.RUNNING:
        return _closed_as(job, CLOSED_SUCCEEDED)
    mine = {"node_id": node_id, "attempts": attempt}
    started = _started_perf(job)
    if writer is None or audio_bytes == 0 or not writer.holds_exactly(audio_bytes):
        received = writer.offset if writer is not None else 0
        if audio_bytes == 0:
            error = VoxfleetError("The engine produced no audio.", code="engine_error")
        else:
            error = VoxfleetError(
                f"The GPU host sent {received} of the {audio_bytes} bytes of audio it reported; nothing was charged.",
                code="audio_incomplete",
            )
        logger.warning("job %s on node %s: %s", job_id, node_id, error.message)
        closed = _job_attempt_fail(job=job, mine=mine, error=error, duration_s=time.perf_counter() - started)
        return CLOSED_FAILED if closed else _closed_as(job, CLOSED_SUCCEEDED)
    path = job_output_path(job=job)
    replace_into(path, writer.wav_bytes())
    writer.discard()
    settled = _job_attempt_succeed(
        job=job,
        mine=mine,
        path=path,
        gpu_seconds=gpu_seconds,
        audio_seconds=audio_seconds,
        engine_version=engine_version,
        started=started,
        audio_bytes=audio_bytes,
    )
    return CLOSED_SUCCEEDED if settled else CLOSED_REFUSED


def host_job_fail(*, node_id: int, job_id: int, attempt: int, code: str, message: str) -> str:
    """The host gave up on the job: failed, tokens released; the job_closed status."""
    job = _job_reported(node_id=node_id, job_id=job_id, attempt=attempt)
    if job.status != JobStatus.RUNNING:
        return _closed_as(job, CLOSED_FAILED)
    error = VoxfleetError(f"Synthesis failed on the GPU host: {message or code}", code=code)
    logger.warning("job %s failed on node %s: %s", job_id, node_id, error.message)
    closed = _job_attempt_fail(job=job, mine={"node_id": node_id, "attempts": attempt}, error=error, duration_s=0.0)
    return CLOSED_FAILED if closed else _closed_as(job, CLOSED_FAILED)


def host_job_output(*, node_id: int, job_id: int, attempt: int) -> Path | None:
    """Where a running job's audio goes, or None if it ended meanwhile; NotYourJob if not this node's."""
    job = host_job_claimed(node_id=node_id, job_id=job_id, attempt=attempt)
    return job_output_path(job=job) if job is not None else None


def host_job_claimed(*, node_id: int, job_id: int, attempt: int) -> SynthesisJob | None:
    """The job running on this node in ``attempt``, as its reports need it (None if it ended
    already); NotYourJob if it is not this node's attempt.

    Read once per claim, while the host's engine starts: its audio frames and its job_done then
    check only whether it is still running here in that attempt (``host_job_running``).
    """
    job = _job_reported(node_id=node_id, job_id=job_id, attempt=attempt)
    return job if job.status == JobStatus.RUNNING else None


def host_job_running(*, node_id: int, job_id: int, attempt: int) -> bool:
    """Whether the job is running on this node in ``attempt`` (one indexed lookup)."""
    return SynthesisJob.objects.filter(pk=job_id, node_id=node_id, attempts=attempt, status=JobStatus.RUNNING).exists()


@dataclass
class _Stream:
    """One job attempt on this connection: where its audio goes, the job as read at its claim
    (claimed here), its writer once the first frame came, and when the row last said it runs here."""

    path: Path
    job: SynthesisJob | None = None
    writer: JobAudioWriter | None = None
    checked_at: float | None = None  # None: checked on the next frame


class HostAudio:
    """The audio streams of one host connection: a ``JobAudioWriter`` per job attempt, in order.

    A job claimed on this connection is read once at its claim, in the background (``claimed``),
    one claimed on an earlier connection at its first frame. Pieces are stored as they come and
    announced to listeners in the background (``Announcer``). Each stream starts at offset 0 and continues exactly
    where it is (a gap or an overlap is refused, as is another sample rate); whether its job still
    runs here in that attempt is checked on its first frame and again every AUDIO_RECHECK_S.
    ``run_sync`` runs a database call from the event loop (the consumer's). Not thread-safe:
    one per connection, used from its consumer only.
    """

    def __init__(self, *, node_id: int, run_sync: Callable) -> None:
        self.node_id = node_id
        self._run_sync = run_sync
        self._streams: dict[tuple[int, int], _Stream] = {}
        self._claim_reads: dict[tuple[int, int], asyncio.Task] = {}
        self._announcer = Announcer()

    def claimed(self, job_id: int, attempt: int) -> None:
        """This connection claimed the attempt: read the job now, while the host's engine starts
        (in the background: the connection's next frames, a renewal, need not wait for it)."""
        key = (job_id, attempt)
        self._claim_reads[key] = asyncio.get_running_loop().create_task(self._claim_read(key))

    async def _claim_read(self, key: tuple[int, int]) -> None:
        job_id, attempt = key
        try:
            job = await self._run_sync(host_job_claimed)(node_id=self.node_id, job_id=job_id, attempt=attempt)
        except (NotYourJob, DatabaseError):
            return  # its first frame reads it instead
        if job is not None:
            self._streams.setdefault(key, _Stream(path=job_output_path(job=job), job=job))

    async def receive(self, frame: AudioFrame) -> None:
        """Store and announce one piece; NotYourJob, JobClosed or AudioRefused when it is not taken."""
        reading = self._claim_reads.pop((frame.job_id, frame.attempt), None)
        if reading is not None:
            await reading
        stream = self._streams.get((frame.job_id, frame.attempt))
        now = time.monotonic()
        if stream is None or stream.checked_at is None or now - stream.checked_at >= AUDIO_RECHECK_S:
            stream = await self._checked(frame, stream)
            stream.checked_at = now
        if stream.writer is None:
            stream.writer = await self._open(frame, stream.path)
        writer = stream.writer
        if frame.sample_rate != writer.sample_rate:
            raise AudioRefused(
                f"job {frame.job_id}: audio at {frame.sample_rate} Hz in a stream at {writer.sample_rate} Hz"
            )
        if frame.offset != writer.offset:
            kind = "a gap" if frame.offset > writer.offset else "an overlap"
            raise AudioRefused(
                f"job {frame.job_id}: audio at offset {frame.offset} leaves {kind}: the stream holds {writer.offset} bytes"
            )
        await writer.append_async(frame.pcm, announcer=self._announcer)

    async def _checked(self, frame: AudioFrame, stream: _Stream | None) -> _Stream:
        """The frame's stream, once the job row says its job runs here in that attempt; else the
        stream goes and NotYourJob or JobClosed says why."""
        key = (frame.job_id, frame.attempt)
        ids = {"node_id": self.node_id, "job_id": frame.job_id, "attempt": frame.attempt}
        if stream is not None and await self._run_sync(host_job_running)(**ids):
            return stream
        try:
            path = await self._run_sync(host_job_output)(**ids)
        except NotYourJob:
            await self.discard(key)
            raise
        if path is None:
            await self.discard(key)
            raise JobClosed(
                f"Job {frame.job_id} ended while its audio was arriving; drop it.",
                job_id=frame.job_id,
                attempt=frame.attempt,
            )
        if stream is None:
            stream = self._streams[key] = _Stream(path=path)
        return stream

    async def _open(self, frame: AudioFrame, path: Path) -> JobAudioWriter:
        if frame.offset != 0:
            raise AudioRefused(
                f"job {frame.job_id}: a stream starts at offset 0 on its connection, not {frame.offset} "
                "(audio sent before a reconnect is discarded: send it again)"
            )
        for other in [key for key in self._streams if key[0] == frame.job_id and key[1] != frame.attempt]:
            await self.discard(other)  # an earlier attempt of the same job: superseded
        return await asyncio.to_thread(JobAudioWriter, job_id=frame.job_id, output=path, sample_rate=frame.sample_rate)

    def take(self, job_id: int, attempt: int) -> tuple[JobAudioWriter | None, SynthesisJob | None]:
        """The attempt's writer and claimed job (None while its read is still under way), no longer
        this connection's (its job_done or job_fail came)."""
        self._claim_read_drop((job_id, attempt))
        stream = self._streams.pop((job_id, attempt), None)
        return (stream.writer, stream.job) if stream is not None else (None, None)

    def _claim_read_drop(self, key: tuple[int, int]) -> None:
        reading = self._claim_reads.pop(key, None)
        if reading is not None:
            reading.cancel()

    async def discard(self, key: tuple[int, int]) -> None:
        self._claim_read_drop(key)
        stream = self._streams.pop(key, None)
        if stream is not None and stream.writer is not None:
            await asyncio.to_thread(stream.writer.discard)

    async def discard_all(self) -> None:
        """The connection closed: partial audio goes (the job's lease decides what becomes of it)."""
        for key in {*self._streams, *self._claim_reads}:
            await self.discard(key)
