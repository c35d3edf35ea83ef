"""Dispatch and execution: which node runs a job, handing it over, running it, closing it.

``job_dispatch`` hands an accepted job to a node (``queued``): the node's Celery queue (the
whole job, ``job_message``, to a host that runs jobs with no database, protocol v3, whose
reports ``.hosts`` handles; the legacy task that claims in SQL to older agents), or the
in-process executor on the embedded default. ``job_execute`` on the node claims it
(``running``) with a conditional UPDATE, synthesizes sentence by sentence — each piece is
stored and announced as it is ready (``inference.streaming``), so listeners hear the job
while it runs — writes the WAV and settles (``succeeded``) or releases (``failed``). ``_job_close`` is the one way an open job ends
without audio (failed, cancelled) and gets its tokens back.

Never charged twice: every transition out of ``running`` is a conditional UPDATE that names
the attempt it belongs to, and only the one caller whose UPDATE changed exactly one row
settles or releases the reservation (billing refuses a second settle/release anyway).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from celery import current_app
from django.conf import settings
from django.db import InterfaceError, OperationalError, connections, transaction
from django.db.models import F
from django.utils import timezone

from billing.errors import ReservationNotOpen
from billing.services import job_slot_release, reservation_release, reservation_settle
from console.errors import NotFound, VoxfleetError
from fleetagent import protocol
from fleetagent.choices import NodeState
from fleetagent.selectors import node_pick_for_tenant
from fleetagent.services import node_ensure
from inference import runtime
from inference.choices import JobStatus
from inference.engines import SynthesisRequest, VoiceSpec, engine_get, engine_version_label
from inference.engines.base import PRESET_VOICES_BY_KEY
from inference.errors import NoNodeAvailable
from inference.executor import executor_submit
from inference.listeners import job_hold, job_listeners_notify, job_unhold
from inference.models import SynthesisJob
from inference.streaming import JobAudioWriter, pcm16, replace_into
from inference.text import parse_instruction

if TYPE_CHECKING:
    from fleetagent.models import Node

logger = logging.getLogger(__name__)

# The Celery task a node's worker runs (inference.tasks.synthesize), sent by name so the
# job services never import the task module that calls them.
SYNTHESIZE_TASK = "inference.synthesize"


def job_node_pick(*, tenant) -> Node:
    """The node for this tenant's next job, or NoNodeAvailable.

    Embedded default: the one machine is the whole fleet, so its local node serves every
    tenant (an enterprise's "private deployment" is this machine) unless ops drained it.
    Otherwise fleetagent's rule: enterprise tenants only on their dedicated online nodes,
    everyone else on shared online nodes, least busy first.
    """
    if settings.EMBEDDED:
        node = node_ensure(name=settings.EMBEDDED_NODE_NAME)
        if node.state == NodeState.DRAINING:
            raise NoNodeAvailable("The local node is draining and takes no new jobs; resume it in the ops dashboard.")
        return node
    node = node_pick_for_tenant(tenant=tenant)
    if node is None:
        if getattr(tenant.plan, "dedicated_nodes", False):
            raise NoNodeAvailable(
                "None of this tenant's dedicated nodes is online; nothing was charged. Try again shortly."
            )
        raise NoNodeAvailable("No synthesis node is online right now; nothing was charged. Try again shortly.")
    return node


def job_execute_local(job_id: int, node_name: str) -> None:
    """One job on the embedded executor's thread: a crash is logged, the connections closed."""
    try:
        job_execute(job_id=job_id, node_name=node_name)
    except Exception:  # noqa: BLE001 - keep the executor alive for the next job
        logger.exception("embedded executor: job %s crashed", job_id)
    finally:
        # Embedded means SQLite (a reconnect is free); closing also means a stopped executor
        # leaves no session behind on the database.
        connections.close_all()


def job_message(*, job: SynthesisJob) -> dict:
    """The JOB a v3 host runs with no database (fleetagent.protocol): what the engine needs.

    ``attempt`` is the number the host's run will be (its claim must name it); the voice's
    ``version`` is what the host caches its prompt audio under (presets have none: 0).
    """
    spec = _voice_spec_for_job(job)
    parsed = parse_instruction(job.instruction) if job.instruction else None
    return {
        "job_id": job.pk,
        "attempt": job.attempts + 1,
        "text": job.text,
        "language": job.language,
        "instruction": parsed.to_dict() if parsed else None,
        "seed": job.seed,
        "speed": job.speed,
        "deadline_ts": job.deadline_at.timestamp(),
        "voice": {
            "key": spec.key,
            "version": job.voice.version if job.voice_id is not None else 0,
            "language": spec.language,
            "gender": spec.gender,
            "display_name": spec.display_name,
            "profile": spec.profile,
            "prompt_transcript": spec.prompt_transcript or "",
            "has_prompt_audio": bool(spec.prompt_audio_path),
        },
    }


def _job_publish(*, job: SynthesisJob, node: Node) -> None:
    """Hand a queued job to its node: the in-process executor, the job message of a host that
    runs jobs with no database (protocol v3), or the legacy task of one that claims in SQL."""
    job_id, node_name = job.pk, node.name
    try:
        if settings.EMBEDDED:
            if not executor_submit(job_execute_local, job_id, node_name):
                # Picked up when the executor starts (inference.embedded recovers queued jobs).
                logger.info("embedded executor not running; job %s stays queued", job_id)
        elif node.protocol_version >= protocol.JOB_FRAMES_FROM:
            current_app.send_task(protocol.RUN_JOB_TASK, kwargs={"job": job_message(job=job)}, queue=node.queue_name)
        else:
            # protocol_version 0 (never connected) too: the agent it gets may be an older one.
            current_app.send_task(
                SYNTHESIZE_TASK, args=[job_id], kwargs={"node_name": node_name}, queue=node.queue_name
            )
    except Exception as exc:  # noqa: BLE001 - broker down: the customer must not pay for it
        logger.exception("could not dispatch job %s to %s", job_id, node_name)
        job = SynthesisJob.objects.select_related("tenant__plan").get(pk=job_id)
        _job_close(
            job=job,
            from_statuses=(JobStatus.QUEUED,),
            status=JobStatus.FAILED,
            error=VoxfleetError(f"Could not queue the job: {exc}", code="dispatch_failed"),
        )


def job_dispatch(*, job_id: int) -> bool:
    """Queue an accepted job (one requeued off a dead node) on a node picked now; whether it was.

    When no node can take it, it stays ``accepted`` (its tokens still reserved) and waits:
    ``jobs_dispatch_waiting`` retries when a node comes back (an agent's hello) and on beat,
    and the deadline sweep ends it as ``no_node_available`` if none does in time. A one-node
    fleet whose agent restarts therefore loses nothing.
    """
    job = SynthesisJob.objects.select_related("tenant__plan", "node", "voice").filter(pk=job_id).first()
    if job is None or job.status != JobStatus.ACCEPTED:
        return False
    node = job.node
    if node is None:
        try:
            node = job_node_pick(tenant=job.tenant)
        except NoNodeAvailable:
            logger.info("job %s waits for a node (none can take it now)", job_id)
            return False
    changed = SynthesisJob.objects.filter(pk=job.pk, status=JobStatus.ACCEPTED).update(
        status=JobStatus.QUEUED, node=node, queued_at=timezone.now()
    )
    if changed == 1:
        _job_publish(job=job, node=node)
    return changed == 1


def _release_quietly(*, reservation_id: int | None, reason: str) -> None:
    if reservation_id is None:
        return
    try:
        reservation_release(reservation_id=reservation_id, reason=reason)
    except ReservationNotOpen:
        # Already released or settled by whoever closed the job first; nothing to undo.
        logger.warning("reservation %s was not open when releasing (%s)", reservation_id, reason)


def _job_close(
    *,
    job: SynthesisJob,
    from_statuses,
    status: str,
    error: VoxfleetError | None = None,
    extra_filter: dict | None = None,
) -> bool:
    """Move an open job to failed/cancelled and release its tokens, if it is still open.

    Returns whether this caller closed it (and so released the tokens).
    """
    with transaction.atomic():
        changed = SynthesisJob.objects.filter(pk=job.pk, status__in=from_statuses, **(extra_filter or {})).update(
            status=status,
            finished_at=timezone.now(),
            error_code=(error.code if error else "")[:64],
            error=(error.message if error else ""),
        )
        if changed == 1:
            _release_quietly(reservation_id=job.reservation_id, reason=status)
    if changed == 1:
        job_slot_release(tenant=job.tenant, job_id=job.pk)
        transaction.on_commit(lambda: runtime.job_done_notify(job_id=job.pk))
    return changed == 1


def job_output_path(*, job: SynthesisJob) -> Path:
    """``OUTPUTS_DIR/<YYYYMMDD-HHMMSS>-<job id>.wav``, stamped with the acceptance time (UTC)."""
    stamp = job.created_at.astimezone(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return Path(settings.OUTPUTS_DIR) / f"{stamp}-{job.pk}.wav"


def _voice_spec_for_job(job: SynthesisJob) -> VoiceSpec:
    if job.voice_id is not None:
        return job.voice.spec()
    spec = PRESET_VOICES_BY_KEY.get(job.voice_key)
    if spec is None:
        raise NotFound(f"The voice {job.voice_key!r} of this job no longer exists.", code="voice_not_found")
    return spec


# A database fault while a job runs (PostgreSQL restarting) is waited out this long, retrying,
# before the job is left to recovery: the audio already made is not thrown away for a blip.
DB_RETRY_FOR_S = 30.0


def _db_retry(fn):
    """``fn()``, retried on a database fault with a fresh connection until DB_RETRY_FOR_S passed."""
    give_up = time.monotonic() + DB_RETRY_FOR_S
    delay = 0.25
    while True:
        try:
            return fn()
        except (OperationalError, InterfaceError):
            _connection_drop()  # a broken pooled connection goes; the next try gets a fresh one
            if time.monotonic() + delay > give_up:
                raise
            logger.warning("database fault while handling a job; retrying in %.2f s", delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def _still_mine(*, job_id: int, mine: dict) -> bool:
    """Between sentences: is the job still this attempt's? A database fault is not a no."""
    try:
        return SynthesisJob.objects.filter(pk=job_id, status=JobStatus.RUNNING, **mine).exists()
    except (OperationalError, InterfaceError):
        _connection_drop()
        return True


def _connection_drop() -> None:
    connection = connections["default"]
    if not connection.in_atomic_block:  # inside a caller's transaction the caller decides
        connection.close()


def job_execute(*, job_id: int, node_name: str) -> SynthesisJob | None:
    """Run one job on ``node_name`` (called by the node's worker or the embedded executor).

    Returns None when the job was not this node's to run (already taken, cancelled, moved
    to another node): redelivered Celery messages land here and do nothing.
    """
    # Held from before the claim until it ends: an agent's hello names it (inference.listeners).
    job_hold(job_id)
    try:
        return _job_execute(job_id=job_id, node_name=node_name)
    finally:
        job_unhold(job_id)


def _job_execute(*, job_id: int, node_name: str) -> SynthesisJob | None:
    # The claim's own timestamp tells a retried claim whether an earlier try committed before
    # its connection died (PostgreSQL restarting): then the job is this attempt's, not gone.
    claim_at = timezone.now()

    def claim() -> int:
        claimed = SynthesisJob.objects.filter(pk=job_id, status=JobStatus.QUEUED, node__name=node_name).update(
            status=JobStatus.RUNNING, started_at=claim_at, attempts=F("attempts") + 1
        )
        if (
            claimed == 0
            and SynthesisJob.objects.filter(
                pk=job_id, status=JobStatus.RUNNING, node__name=node_name, started_at=claim_at
            ).exists()
        ):
            return 1
        return claimed

    if _db_retry(claim) != 1:
        logger.info("job %s is not queued for node %s; skipping", job_id, node_name)
        return None
    job = _db_retry(lambda: SynthesisJob.objects.select_related("tenant__plan", "voice", "node").get(pk=job_id))
    mine = {"attempts": job.attempts, "node__name": node_name}
    started = time.perf_counter()
    engine_seconds = 0.0
    audio_seconds = 0.0
    writer: JobAudioWriter | None = None
    path = job_output_path(job=job)
    try:
        engine = engine_get()
        parsed = parse_instruction(job.instruction) if job.instruction else None
        request = SynthesisRequest(
            text=job.text,
            language=job.language,
            voice=_voice_spec_for_job(job),
            instruction=parsed,
            seed=job.seed,
            speed=job.speed,
        )
        engine.check_language(job.language)
        pieces = engine.synthesize_stream(request)
        while True:
            synth_started = time.perf_counter()
            piece = next(pieces, None)
            engine_seconds += time.perf_counter() - synth_started
            if piece is None:
                break
            if writer is None:
                writer = JobAudioWriter(job_id=job_id, output=path, sample_rate=piece.sample_rate)
            writer.append(pcm16(piece.samples))
            audio_seconds += piece.duration_s
            # Between sentences: a job cancelled meanwhile (a streaming client that hung up)
            # or moved off this node stops here instead of running to the end.
            if not _still_mine(job_id=job_id, mine=mine):
                pieces.close()
                writer.discard()
                logger.info("job %s was closed elsewhere while %s ran it; stopped", job_id, node_name)
                job_listeners_notify(
                    job_id=job_id, outcome="discarded", duration_s=time.perf_counter() - started, rtf=None
                )
                job.refresh_from_db()
                return job
        if writer is None:
            raise VoxfleetError("The engine produced no audio.", code="engine_error")
        replace_into(path, writer.wav_bytes())
        writer.discard()
    except Exception as exc:  # noqa: BLE001 - any engine failure fails the job and frees the tokens
        if writer is not None:
            writer.discard()
        error = (
            exc if isinstance(exc, VoxfleetError) else VoxfleetError(f"Synthesis failed: {exc}", code="engine_error")
        )
        logger.warning("job %s failed on %s: %s", job_id, node_name, error.message)
        _job_attempt_fail(job=job, mine=mine, error=error, duration_s=time.perf_counter() - started)
        return job

    _job_attempt_succeed(
        job=job,
        mine=mine,
        path=path,
        gpu_seconds=engine_seconds,
        audio_seconds=audio_seconds,
        engine_version=engine_version_label(engine),
        started=started,
    )
    return job


def _job_attempt_succeed(
    *,
    job: SynthesisJob,
    mine: dict,
    path: Path,
    gpu_seconds: float,
    audio_seconds: float,
    engine_version: str,
    started: float,
    audio_bytes: int | None = None,
) -> bool:
    """Settle a job whose attempt ``mine`` (node and attempt filter) produced ``path``: whether it did.
    ``audio_bytes``, when the caller counted them, is the PCM in ``path``, announced with the end.

    The one place a job is charged, whoever ran it (the node's worker, or the console on behalf
    of a GPU host that holds no database): a conditional UPDATE naming the attempt and the
    settlement in one transaction, so a late, duplicate or foreign report is never charged.
    """
    rtf = gpu_seconds / audio_seconds if audio_seconds > 0 else None
    node = job.node
    node_name = node.name if node else ""
    outcome = {
        "status": JobStatus.SUCCEEDED,
        "finished_at": timezone.now(),
        "gpu_seconds": round(gpu_seconds, 6),
        "audio_seconds": round(audio_seconds, 6),
        "rtf": round(rtf, 6) if rtf is not None else None,
        "engine_version": engine_version[:64],
        "output_path": str(path),
    }

    def settle() -> int:
        with transaction.atomic():
            finished = SynthesisJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING, **mine).update(**outcome)
            if finished == 1:
                reservation_settle(
                    reservation_id=job.reservation_id,
                    gpu_seconds=gpu_seconds,
                    node_name=node_name,
                    gpu_model=node.gpu_model if node else "",
                )
        return finished

    # One transaction: retried whole while the database restarts, so the audio is not thrown away.
    finished = _db_retry(settle)
    if finished != 1:
        # Cancelled or moved off this node while the engine ran: the customer pays nothing
        # for this take. The file stays only if another attempt already owns it.
        logger.info("job %s finished on %s after it was closed elsewhere; not charged", job.pk, node_name)
        job_listeners_notify(job_id=job.pk, outcome="discarded", duration_s=time.perf_counter() - started, rtf=rtf)
        job.refresh_from_db()
        return False
    # The slot goes back before the client is woken, or its very next request could find
    # its own finished job still holding the plan's only slot.
    job_slot_release(tenant=job.tenant, job_id=job.pk)
    # Listeners of its stream are told how it ended, so they need not read the row back.
    runtime.job_done_notify(
        job_id=job.pk,
        ended={
            "status": JobStatus.SUCCEEDED.value,
            "output_path": str(path),
            "tokens": job.tokens,
            "audio_bytes": audio_bytes,
        },
    )
    job_listeners_notify(job_id=job.pk, outcome=JobStatus.SUCCEEDED, duration_s=time.perf_counter() - started, rtf=rtf)
    for name, value in outcome.items():
        setattr(job, name, value)
    return True


def _job_attempt_fail(*, job: SynthesisJob, mine: dict, error: VoxfleetError, duration_s: float) -> bool:
    """Fail a running job in attempt ``mine`` and release its tokens; False if it was closed elsewhere."""
    closed = _db_retry(
        lambda: _job_close(
            job=job, from_statuses=(JobStatus.RUNNING,), status=JobStatus.FAILED, error=error, extra_filter=mine
        )
    )
    job_listeners_notify(job_id=job.pk, outcome=JobStatus.FAILED, duration_s=duration_s, rtf=None)
    job.refresh_from_db()
    return closed
