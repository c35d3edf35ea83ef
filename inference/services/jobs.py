"""Jobs: the quote, acceptance, cancellation and failure of a synthesis request.

``job_quote`` is the one set of request rules (text limits, instruction parsing, language,
tokens, the plan's feature gate), used by ``job_create`` and by the playground's live
counter. ``job_create`` validates, gates on the plan, reserves the tokens and takes a
concurrency slot (``accepted``), and queues it on a node in the same transaction
(``queued``; published after commit, see ``.dispatch``). ``job_cancel`` and ``job_fail``
close an open job and release its tokens.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.metering import count_tokens
from billing.services import job_slot_acquire, job_slot_release, plan_feature_check, reservation_create
from console.errors import VoxfleetError
from inference.choices import JobSource, JobStatus
from inference.engines.base import SEED_MAX, SEED_MIN, SPEED_MAX, SPEED_MIN
from inference.errors import JobNotCancellable
from inference.models import OPEN_STATUSES, SynthesisJob
from inference.selectors import voice_resolve
from inference.services.dispatch import _db_retry, _job_close, _job_publish, job_node_pick
from inference.text import InstructionInvalid, detect_language, normalize_text, parse_instruction, validate_request_text

# How long a job may take from acceptance to audio before it is given up (and released).
JOB_TIMEOUT_S = 120
IDEMPOTENCY_KEY_MAX = 100


@dataclass(frozen=True)
class JobQuote:
    """What a request would be: its normalized text and instruction, language, features and
    tokens, and the refusals the API would answer with (none: it would be accepted, given a
    voice, a seed and quota)."""

    text: str
    instruction: str
    language: str
    features: frozenset[str]
    tokens: int
    text_tokens: int
    instruction_tokens: int
    # The text/instruction limits (400) and the plan's feature gate (403), as they are raised.
    invalid: VoxfleetError | None = None
    refused: VoxfleetError | None = None
    # Their messages under the request field each is about ("text", "instruction").
    errors: dict[str, str] = field(default_factory=dict)


def job_quote(*, tenant, text, instruction=None) -> JobQuote:
    """Validate, meter and gate a request without creating anything (never raises a refusal).

    The language is what the job will use: the dialect's language if the instruction names
    one (Cantonese), else the language the text is written in. When the text or instruction
    break a limit, the rest is still worked out from their normalized form so a live counter
    can show tokens and the plan's verdict next to the error.
    """
    invalid: VoxfleetError | None = None
    try:
        validated = validate_request_text(text, instruction)
        clean_text, clean_instruction = validated.text, validated.instruction or ""
    except VoxfleetError as exc:
        invalid = exc
        clean_text = normalize_text(text) if isinstance(text, str) else ""
        clean_instruction = normalize_text(instruction) if isinstance(instruction, str) else ""
    parsed = parse_instruction(clean_instruction) if clean_instruction else None
    features = parsed.required_features if parsed else frozenset()
    language = (parsed.language if parsed and parsed.language else None) or detect_language(clean_text)
    refused: VoxfleetError | None = None
    try:
        plan_feature_check(tenant=tenant, language=language, features=set(features))
    except VoxfleetError as exc:
        refused = exc
    errors: dict[str, str] = {}
    if invalid is not None:
        errors["instruction" if isinstance(invalid, InstructionInvalid) else "text"] = invalid.message
    if refused is not None:
        # A language gate is about the text; dialect/emotion/style gates about the instruction.
        gated = "text" if str(refused.extra.get("feature", "")).startswith("language:") else "instruction"
        errors.setdefault(gated, refused.message)
    return JobQuote(
        text=clean_text,
        instruction=clean_instruction,
        language=language,
        features=frozenset(features),
        tokens=count_tokens(clean_text, clean_instruction),
        text_tokens=count_tokens(clean_text),
        instruction_tokens=count_tokens(clean_instruction) if clean_instruction else 0,
        invalid=invalid,
        refused=refused,
        errors=errors,
    )


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
    quote = job_quote(tenant=tenant, text=text, instruction=instruction)
    if quote.invalid is not None:
        raise quote.invalid
    seed = _seed_clean(seed)
    speed = _speed_clean(speed)
    resolved = voice_resolve(tenant=tenant, ref=voice)
    if quote.refused is not None:
        raise quote.refused
    node = job_node_pick(tenant=tenant)
    now = timezone.now()
    job = SynthesisJob(
        tenant=tenant,
        status=JobStatus.ACCEPTED,
        source=source,
        voice=resolved.voice,
        voice_key=resolved.spec.key,
        voice_name=resolved.spec.display_name,
        text=quote.text,
        instruction=quote.instruction,
        language=quote.language,
        seed=seed,
        speed=speed,
        tokens=quote.tokens,
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
                tokens=quote.tokens,
                idempotency_key=f"job:{idempotency_key}" if idempotency_key else None,
                reference=f"synthesis-job:{job.pk}",
                api_key=api_key,  # counts against the key's monthly token cap, if it has one
            )
            # Last, so a refusal above never holds a slot; a refusal here rolls the
            # reservation back with the transaction.
            job_slot_acquire(tenant=tenant, job_id=job.pk)
            slot_taken = True
            # accepted -> queued in the same transaction (one commit on the hot path); the
            # message is published only after commit so a worker never sees an uncommitted job.
            queued_at = timezone.now()
            SynthesisJob.objects.filter(pk=job.pk, status=JobStatus.ACCEPTED).update(
                reservation_id=reservation.pk, status=JobStatus.QUEUED, queued_at=queued_at
            )
            job.reservation_id, job.status, job.queued_at = reservation.pk, JobStatus.QUEUED, queued_at
            transaction.on_commit(lambda: _job_publish(job=job, node=node))
    except IntegrityError:
        if slot_taken:
            job_slot_release(tenant=tenant, job_id=job.pk)
        # A concurrent request with the same Idempotency-Key won the race: return its job.
        if idempotency_key is not None:
            existing = SynthesisJob.objects.filter(tenant=tenant, idempotency_key=idempotency_key).first()
            if existing is not None:
                return existing
        raise
    except BaseException:
        if slot_taken:
            job_slot_release(tenant=tenant, job_id=job.pk)
        raise
    return job


def job_accepted_read(*, job_id: int) -> SynthesisJob:
    """An accepted job read back for its answer (the jobs API's 202). Its tokens are reserved
    and it is queued, so a database fault now (PostgreSQL restarting) is waited out
    (``_db_retry``): an error answer would say "nothing was charged" about a job that runs."""
    return _db_retry(lambda: SynthesisJob.objects.select_related("node").get(pk=job_id))


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
