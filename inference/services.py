"""Inference writes: voices and synthesis jobs (keyword-only, named <entity>_<action>).

Job life cycle (CONTRACTS.md): ``job_create`` validates, gates on the plan, reserves the
tokens and takes a concurrency slot (status ``accepted``); after commit ``job_dispatch``
hands it to a node (``queued``): the node's Celery queue, or the in-process executor on the
embedded default; ``job_execute`` on the node claims it (``running``) with a conditional
UPDATE, synthesizes, writes the WAV and settles (``succeeded``) or releases (``failed``).
``job_cancel`` releases. ``job_requeue_from_node`` moves a dead node's jobs once.

Never charged twice: every transition out of ``running`` is a conditional UPDATE that names
the attempt it belongs to, and only the one caller whose UPDATE changed exactly one row
settles or releases the reservation (billing refuses a second settle/release anyway).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from billing import limits as billing_limits
from billing.errors import ReservationNotOpen
from billing.metering import count_tokens
from billing.services import plan_feature_check, reservation_create, reservation_release, reservation_settle
from console.errors import Conflict, NotFound, VoxfleetError
from fleetagent.choices import NodeState
from fleetagent.selectors import node_pick_for_tenant
from fleetagent.services import node_ensure
from inference import runtime
from inference.audio import extract_voice_profile, validate_prompt_audio
from inference.engines import engine_get, engine_version_label
from inference.engines.base import SEED_MAX, SEED_MIN, SPEED_MAX, SPEED_MIN, SynthesisRequest, VoiceSpec
from inference.listeners import job_listeners_notify
from inference.models import OPEN_STATUSES, JobSource, JobStatus, SynthesisJob, Voice, VoiceGender
from inference.selectors import voice_resolve
from inference.text import detect_language, parse_instruction, validate_request_text

if TYPE_CHECKING:
    from fleetagent.models import Node

logger = logging.getLogger(__name__)

# How long a job may take from acceptance to audio before it is given up (and released).
JOB_TIMEOUT_S = 120
VOICE_NAME_MAX = 64
IDEMPOTENCY_KEY_MAX = 100


class NoNodeAvailable(VoxfleetError):
    """No online node may take this tenant's job right now (nothing was reserved)."""

    code = "no_node_available"
    status = 503
    openai_type = "server_error"


class JobNotCancellable(Conflict):
    code = "job_not_cancellable"


class JobTimedOut(VoxfleetError):
    code = "job_timed_out"
    status = 504
    openai_type = "server_error"


# --- voices ----------------------------------------------------------------------------------


def _voices_dir() -> Path:
    return Path(settings.VAR_DIR) / "voices"


def _voice_name_clean(name: str) -> str:
    clean = " ".join(str(name or "").split())
    if not clean:
        raise VoxfleetError("A voice needs a name.", code="invalid_voice_name", param="name")
    if len(clean) > VOICE_NAME_MAX:
        raise VoxfleetError(
            f"Voice names are at most {VOICE_NAME_MAX} characters.", code="invalid_voice_name", param="name"
        )
    return clean


def _voice_name_free(*, tenant, name: str, exclude_pk: int | None = None) -> None:
    from inference.engines.base import PRESET_VOICES

    taken = Voice.objects.filter(tenant=tenant, name__iexact=name)
    if exclude_pk is not None:
        taken = taken.exclude(pk=exclude_pk)
    lowered = name.lower()
    if taken.exists() or any(lowered in (p.key.lower(), p.display_name.lower()) for p in PRESET_VOICES):
        raise Conflict(f"A voice named {name!r} already exists.", code="voice_name_taken", param="name")


def voice_create(
    *,
    tenant,
    name: str,
    audio: bytes,
    transcript: str = "",
    language: str | None = None,
    gender: str | None = None,
    created_by=None,
) -> Voice:
    """A tenant voice from prompt audio: checks the audio, extracts the profile, stores the file."""
    name = _voice_name_clean(name)
    _voice_name_free(tenant=tenant, name=name)
    transcript = " ".join(str(transcript or "").split())
    if len(transcript) > 500:
        raise VoxfleetError("The transcript is at most 500 characters.", code="invalid_transcript", param="transcript")
    if language is not None and language not in ("zh", "yue", "en", "ja", "ko"):
        raise VoxfleetError(
            f"Unknown language {language!r}; use zh, yue, en, ja or ko.", code="invalid_language", param="language"
        )
    if gender is not None and gender not in VoiceGender.values:
        raise VoxfleetError("Gender must be female or male.", code="invalid_gender", param="gender")
    prompt = validate_prompt_audio(audio)
    profile = extract_voice_profile(prompt.decoded.samples, prompt.decoded.sample_rate, segments=prompt.segments)
    if gender is None:
        gender = profile.gender_hint or VoiceGender.FEMALE
    if language is None:
        language = detect_language(transcript) if transcript else "zh"

    relative = f"{tenant.pk}/{uuid.uuid4().hex}.{prompt.decoded.format}"
    path = _voices_dir() / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(audio)
    try:
        with transaction.atomic():
            voice = Voice.objects.create(
                tenant=tenant,
                name=name,
                language=language,
                gender=gender,
                prompt_audio=relative,
                prompt_transcript=transcript,
                prompt_duration_s=round(float(prompt.duration_s), 3),
                prompt_sample_rate=int(prompt.decoded.sample_rate),
                profile=profile.to_dict(),
                created_by=created_by,
            )
    except IntegrityError:
        path.unlink(missing_ok=True)
        raise Conflict(f"A voice named {name!r} already exists.", code="voice_name_taken", param="name") from None
    except Exception:
        path.unlink(missing_ok=True)
        raise
    return voice


def voice_rename(*, voice: Voice, name: str) -> Voice:
    name = _voice_name_clean(name)
    _voice_name_free(tenant=voice.tenant, name=name, exclude_pk=voice.pk)
    try:
        with transaction.atomic():
            Voice.objects.filter(pk=voice.pk).update(name=name, updated_at=timezone.now())
    except IntegrityError:
        raise Conflict(f"A voice named {name!r} already exists.", code="voice_name_taken", param="name") from None
    voice.refresh_from_db()
    return voice


def voice_delete(*, voice: Voice) -> None:
    """Delete the voice and, after commit, its prompt audio; finished jobs keep their audio."""
    path = _voices_dir() / voice.prompt_audio
    with transaction.atomic():
        voice.delete()
        transaction.on_commit(lambda: path.unlink(missing_ok=True))


# --- jobs: acceptance -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    text: str
    instruction: str
    language: str
    features: frozenset[str]
    tokens: int
    seed: int
    speed: float


def _seed_clean(seed) -> int:
    if seed is None:
        # Drawn, stored and returned so the take can be replayed byte for byte.
        return SEED_MIN + secrets.randbelow(SEED_MAX - SEED_MIN + 1)
    if isinstance(seed, bool) or not isinstance(seed, int) or not SEED_MIN <= seed <= SEED_MAX:
        raise VoxfleetError(
            f"Seed must be an integer from {SEED_MIN} to {SEED_MAX:,}; got {seed!r}.", code="invalid_seed", param="seed"
        )
    return seed


def _speed_clean(speed) -> float:
    if speed is None:
        return 1.0
    try:
        value = float(speed)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(speed, bool) or not SPEED_MIN <= value <= SPEED_MAX:
        raise VoxfleetError(
            f"Speed must be a number from {SPEED_MIN} to {SPEED_MAX}; got {speed!r}.",
            code="invalid_speed",
            param="speed",
        )
    return value


def job_prepare(*, text, instruction=None, seed=None, speed=None) -> _Prepared:
    """Validate and meter a request without touching the database (quotes use this too)."""
    validated = validate_request_text(text, instruction)
    parsed = parse_instruction(validated.instruction) if validated.instruction else None
    language = (parsed.language if parsed and parsed.language else None) or detect_language(validated.text)
    instruction_text = validated.instruction or ""
    return _Prepared(
        text=validated.text,
        instruction=instruction_text,
        language=language,
        features=parsed.required_features if parsed else frozenset(),
        tokens=count_tokens(validated.text, instruction_text),
        seed=_seed_clean(seed),
        speed=_speed_clean(speed),
    )


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


def _idempotency_clean(key: str | None) -> str | None:
    if key is None:
        return None
    key = str(key).strip()
    if not key:
        return None
    if len(key) > IDEMPOTENCY_KEY_MAX:
        raise VoxfleetError(
            f"Idempotency-Key is at most {IDEMPOTENCY_KEY_MAX} characters.", code="invalid_idempotency_key"
        )
    return key


def job_create(
    *,
    tenant,
    text,
    voice: str,
    instruction=None,
    seed=None,
    speed=None,
    idempotency_key: str | None = None,
    source: str = JobSource.API,
    api_key=None,
    created_by=None,
) -> SynthesisJob:
    """Accept a synthesis request: validate, gate on the plan, reserve tokens, take a job slot.

    Refusals (400 bad input, 404 unknown voice, 403 plan feature, 429 quota or concurrency,
    503 no node) leave nothing reserved. The same ``idempotency_key`` returns the first job.
    """
    idempotency_key = _idempotency_clean(idempotency_key)
    if idempotency_key is not None:
        existing = SynthesisJob.objects.filter(tenant=tenant, idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing
    prepared = job_prepare(text=text, instruction=instruction, seed=seed, speed=speed)
    resolved = voice_resolve(tenant=tenant, ref=voice)
    plan_feature_check(tenant=tenant, language=prepared.language, features=set(prepared.features))
    node = job_node_pick(tenant=tenant)
    now = timezone.now()
    job = SynthesisJob(
        tenant=tenant,
        status=JobStatus.ACCEPTED,
        source=source,
        voice=resolved.voice,
        voice_key=resolved.spec.key,
        voice_name=resolved.spec.display_name,
        text=prepared.text,
        instruction=prepared.instruction,
        language=prepared.language,
        seed=prepared.seed,
        speed=prepared.speed,
        tokens=prepared.tokens,
        idempotency_key=idempotency_key,
        node=node,
        api_key=api_key,
        created_by=created_by,
        deadline_at=now + dt.timedelta(seconds=JOB_TIMEOUT_S),
    )
    slot_taken = False
    try:
        with transaction.atomic():
            job.save()
            reservation = reservation_create(
                tenant=tenant,
                tokens=prepared.tokens,
                idempotency_key=f"job:{idempotency_key}" if idempotency_key else None,
                reference=f"synthesis-job:{job.pk}",
            )
            # Last, so a refusal above never holds a slot; a refusal here rolls the
            # reservation back with the transaction.
            billing_limits.job_slot_acquire(tenant=tenant, job_id=job.pk)
            slot_taken = True
            # accepted -> queued in the same transaction (one commit on the hot path); the
            # message is published only after commit so a worker never sees an uncommitted job.
            queued_at = timezone.now()
            SynthesisJob.objects.filter(pk=job.pk, status=JobStatus.ACCEPTED).update(
                reservation_id=reservation.pk, status=JobStatus.QUEUED, queued_at=queued_at
            )
            job.reservation_id, job.status, job.queued_at = reservation.pk, JobStatus.QUEUED, queued_at
            job_id, node_name, queue_name = job.pk, node.name, node.queue_name
            transaction.on_commit(lambda: _job_publish(job_id=job_id, node_name=node_name, queue_name=queue_name))
    except IntegrityError:
        if slot_taken:
            billing_limits.job_slot_release(tenant=tenant, job_id=job.pk)
        # A concurrent request with the same Idempotency-Key won the race: return its job.
        if idempotency_key is not None:
            existing = SynthesisJob.objects.filter(tenant=tenant, idempotency_key=idempotency_key).first()
            if existing is not None:
                return existing
        raise
    except BaseException:
        if slot_taken:
            billing_limits.job_slot_release(tenant=tenant, job_id=job.pk)
        raise
    return job


# --- jobs: dispatch and execution ---------------------------------------------------------------


def _job_publish(*, job_id: int, node_name: str, queue_name: str) -> None:
    """Hand a queued job to its node: the node's Celery queue, or the in-process executor."""
    try:
        if settings.EMBEDDED:
            from inference.embedded import executor_submit

            executor_submit(job_id=job_id, node_name=node_name)
        else:
            from inference.tasks import synthesize

            synthesize.apply_async(args=[job_id], kwargs={"node_name": node_name}, queue=queue_name)
    except Exception as exc:  # noqa: BLE001 - broker down: the customer must not pay for it
        logger.exception("could not dispatch job %s to %s", job_id, node_name)
        job = SynthesisJob.objects.select_related("tenant__plan").get(pk=job_id)
        _job_close(
            job=job,
            from_statuses=(JobStatus.QUEUED,),
            status=JobStatus.FAILED,
            error=VoxfleetError(f"Could not queue the job: {exc}", code="dispatch_failed"),
        )


def job_dispatch(*, job_id: int) -> None:
    """Queue an accepted job (one requeued off a dead node) on a node picked now.

    When no node is online it fails and its tokens are released.
    """
    job = SynthesisJob.objects.select_related("tenant__plan", "node").filter(pk=job_id).first()
    if job is None or job.status != JobStatus.ACCEPTED:
        return
    node = job.node
    if node is None:
        try:
            node = job_node_pick(tenant=job.tenant)
        except NoNodeAvailable as exc:
            _job_close(job=job, from_statuses=(JobStatus.ACCEPTED,), status=JobStatus.FAILED, error=exc)
            return
    changed = SynthesisJob.objects.filter(pk=job.pk, status=JobStatus.ACCEPTED).update(
        status=JobStatus.QUEUED, node=node, queued_at=timezone.now()
    )
    if changed == 1:
        _job_publish(job_id=job.pk, node_name=node.name, queue_name=node.queue_name)


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
        billing_limits.job_slot_release(tenant=job.tenant, job_id=job.pk)
        transaction.on_commit(lambda: runtime.job_done_notify(job_id=job.pk))
    return changed == 1


def job_output_path(*, job: SynthesisJob) -> Path:
    """``OUTPUTS_DIR/<YYYYMMDD-HHMMSS>-<job id>.wav``, stamped with the acceptance time (UTC)."""
    stamp = job.created_at.astimezone(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return Path(settings.OUTPUTS_DIR) / f"{stamp}-{job.pk}.wav"


def _voice_spec_for_job(job: SynthesisJob) -> VoiceSpec:
    from inference.engines.base import PRESET_VOICES_BY_KEY

    if job.voice_id is not None:
        return job.voice.spec()
    spec = PRESET_VOICES_BY_KEY.get(job.voice_key)
    if spec is None:
        raise NotFound(f"The voice {job.voice_key!r} of this job no longer exists.", code="voice_not_found")
    return spec


def job_execute(*, job_id: int, node_name: str) -> SynthesisJob | None:
    """Run one job on ``node_name`` (called by the node's worker or the embedded executor).

    Returns None when the job was not this node's to run (already taken, cancelled, moved
    to another node): redelivered Celery messages land here and do nothing.
    """
    claimed = SynthesisJob.objects.filter(pk=job_id, status=JobStatus.QUEUED, node__name=node_name).update(
        status=JobStatus.RUNNING, started_at=timezone.now(), attempts=F("attempts") + 1
    )
    if claimed != 1:
        logger.info("job %s is not queued for node %s; skipping", job_id, node_name)
        return None
    job = SynthesisJob.objects.select_related("tenant__plan", "voice", "node").get(pk=job_id)
    mine = {"attempts": job.attempts, "node__name": node_name}
    started = time.perf_counter()
    engine_seconds = 0.0
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
        synth_started = time.perf_counter()
        result = engine.synthesize(request)
        engine_seconds = time.perf_counter() - synth_started
        wav = result.to_wav_bytes()
        path = job_output_path(job=job)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.part")
        partial.write_bytes(wav)
        os.replace(partial, path)
    except Exception as exc:  # noqa: BLE001 - any engine failure fails the job and frees the tokens
        error = (
            exc if isinstance(exc, VoxfleetError) else VoxfleetError(f"Synthesis failed: {exc}", code="engine_error")
        )
        logger.warning("job %s failed on %s: %s", job_id, node_name, error.message)
        _job_close(job=job, from_statuses=(JobStatus.RUNNING,), status=JobStatus.FAILED, error=error, extra_filter=mine)
        job_listeners_notify(
            job_id=job_id, outcome=JobStatus.FAILED, duration_s=time.perf_counter() - started, rtf=None
        )
        job.refresh_from_db()
        return job

    audio_seconds = result.duration_s
    rtf = engine_seconds / audio_seconds if audio_seconds > 0 else None
    node = job.node
    outcome = {
        "status": JobStatus.SUCCEEDED,
        "finished_at": timezone.now(),
        "gpu_seconds": round(engine_seconds, 6),
        "audio_seconds": round(audio_seconds, 6),
        "rtf": round(rtf, 6) if rtf is not None else None,
        "engine_version": engine_version_label(engine)[:64],
        "output_path": str(path),
    }
    with transaction.atomic():
        finished = SynthesisJob.objects.filter(pk=job_id, status=JobStatus.RUNNING, **mine).update(**outcome)
        if finished == 1:
            reservation_settle(
                reservation_id=job.reservation_id,
                gpu_seconds=engine_seconds,
                node_name=node_name,
                gpu_model=node.gpu_model if node else "",
            )
    if finished != 1:
        # Cancelled or moved off this node while the engine ran: the customer pays nothing
        # for this take. The file stays only if another attempt already owns it.
        logger.info("job %s finished on %s after it was closed elsewhere; not charged", job_id, node_name)
        job_listeners_notify(job_id=job_id, outcome="discarded", duration_s=time.perf_counter() - started, rtf=rtf)
        job.refresh_from_db()
        return job
    # The slot goes back before the client is woken, or its very next request could find
    # its own finished job still holding the plan's only slot.
    billing_limits.job_slot_release(tenant=job.tenant, job_id=job_id)
    runtime.job_done_notify(job_id=job_id)
    job_listeners_notify(job_id=job_id, outcome=JobStatus.SUCCEEDED, duration_s=time.perf_counter() - started, rtf=rtf)
    for name, value in outcome.items():
        setattr(job, name, value)
    return job


# --- jobs: cancel, requeue, expiry --------------------------------------------------------------


def job_cancel(*, job: SynthesisJob, reason: str = "cancelled by the customer") -> SynthesisJob:
    """Cancel an open job and release its tokens; a finished job is a 409."""
    closed = _job_close(
        job=job,
        from_statuses=OPEN_STATUSES,
        status=JobStatus.CANCELLED,
        error=VoxfleetError(reason, code="cancelled"),
    )
    job.refresh_from_db()
    if not closed:
        raise JobNotCancellable(f"Job {job.pk} is already {job.status}; only open jobs can be cancelled.")
    return job


def job_fail(*, job: SynthesisJob, code: str, message: str) -> bool:
    """Fail an open job (timeouts, operators) and release its tokens; False if it already closed."""
    return _job_close(
        job=job, from_statuses=OPEN_STATUSES, status=JobStatus.FAILED, error=VoxfleetError(message, code=code)
    )


# A job is moved off a dead node at most this many times; the next death fails it.
MAX_REQUEUES = 1


@dataclass
class RequeueOutcome:
    """Jobs moved off a dead node; ``len()`` is how many were handled (the agent counts them)."""

    requeued: list[int]
    failed: list[int]

    def __len__(self) -> int:
        return len(self.requeued) + len(self.failed)


def job_requeue_from_node(*, node_name: str) -> RequeueOutcome:
    """Move the open jobs of a dead node: requeue each once, fail (and release) on a second death.

    Call after the node is marked offline/stuck so it is not picked again. Returns the
    ids requeued and failed. A late result from the dead node's worker
    finds the job no longer running as its attempt and is discarded, never charged.
    """
    outcome = RequeueOutcome(requeued=[], failed=[])
    open_jobs = SynthesisJob.objects.select_related("tenant__plan").filter(
        node__name=node_name, status__in=(JobStatus.QUEUED, JobStatus.RUNNING)
    )
    for job in open_jobs:
        # A job still waiting in the dead node's queue never ran there: moving it is not a retry.
        ran = job.status == JobStatus.RUNNING
        if ran and job.requeues >= MAX_REQUEUES:
            if job_fail(
                job=job,
                code="node_lost",
                message=f"Node {node_name} stopped while running this job twice; nothing was charged.",
            ):
                outcome.failed.append(job.pk)
            continue
        with transaction.atomic():
            moved = SynthesisJob.objects.filter(
                pk=job.pk, node__name=node_name, status=job.status, requeues=job.requeues
            ).update(status=JobStatus.ACCEPTED, node=None, requeues=F("requeues") + (1 if ran else 0), queued_at=None)
            if moved == 1:
                job_id = job.pk
                transaction.on_commit(lambda job_id=job_id: job_dispatch(job_id=job_id))
        if moved == 1:
            outcome.requeued.append(job.pk)
    return outcome


def jobs_expire_overdue(*, now: dt.datetime | None = None) -> list[int]:
    """Fail open jobs past their deadline and release their tokens (run periodically)."""
    now = now or timezone.now()
    expired = []
    for job in SynthesisJob.objects.select_related("tenant__plan").filter(
        status__in=OPEN_STATUSES, deadline_at__lt=now
    ):
        if job_fail(job=job, code="job_timed_out", message="The job did not finish in time; nothing was charged."):
            expired.append(job.pk)
    return expired
