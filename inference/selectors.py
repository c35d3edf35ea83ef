"""Inference reads: voices a tenant may use, its jobs and its synthesis usage."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from django.db.models import Count, Min, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from console.errors import NotFound
from fleetagent.signals import NodeWork
from inference.engines.base import PRESET_VOICES, PRESET_VOICES_BY_KEY, VoiceSpec
from inference.models import JobStatus, SynthesisJob, Voice, VoiceAlias


@dataclass(frozen=True)
class ResolvedVoice:
    """A voice a request may use: a preset (``voice`` is None) or one of the tenant's own."""

    spec: VoiceSpec
    voice: Voice | None

    @property
    def id(self) -> str:
        return self.spec.key

    @property
    def is_preset(self) -> bool:
        return self.voice is None


def _tenant_voice_pk(ref: str) -> int | None:
    prefix = "tenant-voice-"
    if ref.startswith(prefix) and ref[len(prefix) :].isdigit():
        return int(ref[len(prefix) :])
    return None


def voice_resolve(*, tenant, ref) -> ResolvedVoice:
    """The voice named by ``ref``: a voice id (preset key or ``tenant-voice-<n>``) or a name.

    Names match case-insensitively: the tenant's own voices first, then presets by display
    name or by its short form ("Xiaomei"). Another tenant's voice is indistinguishable from a
    voice that does not exist (404).
    """
    if isinstance(ref, dict):
        ref = ref.get("id")
    if not isinstance(ref, str) or not ref.strip():
        raise NotFound(
            "Unknown voice: give a voice id or name (GET /api/v1/voices lists them).", code="voice_not_found"
        )
    ref = ref.strip()
    preset = PRESET_VOICES_BY_KEY.get(ref)
    if preset is not None:
        return ResolvedVoice(spec=preset, voice=None)
    # Aliases (OpenAI's voice names) map to presets: "alloy" must work for unchanged clients.
    aliased = VoiceAlias.objects.filter(name=ref.lower()).values_list("preset_key", flat=True).first()
    if aliased in PRESET_VOICES_BY_KEY:
        return ResolvedVoice(spec=PRESET_VOICES_BY_KEY[aliased], voice=None)
    pk = _tenant_voice_pk(ref)
    if pk is not None:
        voice = Voice.objects.filter(tenant=tenant, pk=pk).first()
        if voice is not None:
            return ResolvedVoice(spec=voice.spec(), voice=voice)
    voice = Voice.objects.filter(tenant=tenant, name__iexact=ref).first()
    if voice is not None:
        return ResolvedVoice(spec=voice.spec(), voice=voice)
    lowered = ref.lower()
    for spec in PRESET_VOICES:
        short = spec.display_name.split(" (")[0].lower()
        if lowered in (spec.display_name.lower(), short):
            return ResolvedVoice(spec=spec, voice=None)
    raise NotFound(
        f"Unknown voice {ref!r}: give a voice id or name (GET /api/v1/voices lists them).", code="voice_not_found"
    )


def voice_list_for_tenant(*, tenant) -> list[ResolvedVoice]:
    """Presets (available to every tenant) followed by the tenant's own voices by name."""
    presets = [ResolvedVoice(spec=spec, voice=None) for spec in PRESET_VOICES]
    own = [ResolvedVoice(spec=v.spec(), voice=v) for v in Voice.objects.filter(tenant=tenant).order_by("name", "pk")]
    return presets + own


def voice_get_own(*, tenant, voice_id: str) -> Voice:
    """One of the tenant's own voices by id (presets are not editable); 404 otherwise."""
    pk = _tenant_voice_pk(str(voice_id))
    voice = Voice.objects.filter(tenant=tenant, pk=pk).first() if pk is not None else None
    if voice is None:
        raise NotFound(f"Unknown voice {voice_id!r}.", code="voice_not_found")
    return voice


def job_get_for_tenant(*, tenant, job_id) -> SynthesisJob:
    """The tenant's job; another tenant's job is a 404 like a missing one."""
    try:
        pk = int(job_id)
    except (TypeError, ValueError):
        pk = None
    job = (
        SynthesisJob.objects.select_related("node", "voice").filter(tenant=tenant, pk=pk).first()
        if pk is not None
        else None
    )
    if job is None:
        raise NotFound(f"Unknown job {job_id!r}.", code="job_not_found")
    return job


def job_list_for_tenant(*, tenant, status: str | None = None):
    jobs = SynthesisJob.objects.select_related("node").filter(tenant=tenant)
    if status:
        jobs = jobs.filter(status=status)
    return jobs.order_by("-created_at", "-id")


def job_wait_finished(*, job_id: int, timeout_s: float, run=None) -> SynthesisJob:
    """Block until the job is finished or ``timeout_s`` passes; returns the job as it is then.

    ``run(fn)`` executes each database read (the speech endpoint passes its database threads).
    """
    from inference import runtime

    latest: dict[str, SynthesisJob] = {}

    def fetch() -> None:
        latest["job"] = SynthesisJob.objects.select_related("node", "voice").get(pk=job_id)

    def is_done() -> bool:
        (run or (lambda fn: fn()))(fetch)
        return latest["job"].is_finished

    runtime.job_done_wait(job_id=job_id, is_done=is_done, timeout_s=timeout_s)
    return latest["job"]


def usage_for_tenant(*, tenant, days: int = 30, now: dt.datetime | None = None) -> dict:
    """Synthesis usage per day in the tenant's time zone for the last ``days`` days (days with use only).

    Tokens charged, jobs and GPU seconds per day are billing's one usage-per-day
    (``billing.selectors.usage_by_day``: settled reservations, by the local day they settled);
    audio seconds are those of the jobs that finished that day. ``jobs_by_status`` counts the
    jobs created since the first day began.
    """
    from billing.selectors import usage_by_day, usage_since

    now = now or timezone.now()
    since = usage_since(tenant=tenant, days=days, now=now)
    audio = dict(
        SynthesisJob.objects.filter(tenant=tenant, status=JobStatus.SUCCEEDED, finished_at__gte=since)
        .annotate(day=TruncDate("finished_at", tzinfo=tenant.tz))
        .values("day")
        .annotate(seconds=Sum("audio_seconds"))
        .order_by()
        .values_list("day", "seconds")
    )
    days_out = [
        {
            "date": row["day"].isoformat(),
            "tokens": row["tokens"],
            "jobs": row["jobs"],
            "audio_seconds": round(float(audio.get(row["day"]) or 0.0), 3),
            "gpu_seconds": round(row["gpu_seconds"], 3),
        }
        for row in usage_by_day(tenant=tenant, days=days, now=now)
        if row["jobs"]
    ]
    jobs = SynthesisJob.objects.filter(tenant=tenant, created_at__gte=since)
    by_status = dict(jobs.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    return {
        "since": since.isoformat(),
        "days": days_out,
        "tokens_charged": sum(d["tokens"] for d in days_out),
        "jobs_by_status": {status: int(by_status.get(status, 0)) for status in JobStatus.values},
    }


@dataclass(frozen=True)
class JobAudio:
    """A finished job's audio in the requested format."""

    content: bytes
    content_type: str
    sample_rate: int


def job_audio_read(*, job: SynthesisJob, response_format: str = "wav", stored_wav: bool = True) -> JobAudio:
    """A succeeded job's audio: encoded at 24 kHz (mp3, opus, aac, flac, wav, pcm), or for
    ``wav`` with ``stored_wav`` the stored file as it is (at the engine's rate)."""
    from pathlib import Path

    import soundfile

    from console.errors import Conflict
    from inference.audio.encode import FORMATS, OUTPUT_RATE, encode_whole, pcm16_floats

    if response_format not in FORMATS:
        raise ValueError(f"unknown audio format {response_format!r}")
    if job.status != JobStatus.SUCCEEDED or not job.output_path:
        raise Conflict(f"Job {job.pk} is {job.status}; audio exists only for succeeded jobs.", code="job_not_finished")
    path = Path(job.output_path)
    if not path.exists():
        raise NotFound(f"The audio of job {job.pk} is no longer stored.", code="audio_gone")
    if response_format == "wav" and stored_wav:
        data = path.read_bytes()
        return JobAudio(
            content=data, content_type=FORMATS["wav"].content_type, sample_rate=soundfile.info(path).samplerate
        )
    pcm, rate = soundfile.read(path, dtype="int16")
    # The same int16 -> float mapping as the stream, so a download equals the streamed bytes.
    content = encode_whole(pcm16_floats(pcm), sample_rate=rate, format_name=response_format)
    return JobAudio(content=content, content_type=FORMATS[response_format].content_type, sample_rate=OUTPUT_RATE)


def job_counts_for_node(*, node_name: str) -> tuple[int, int]:
    """(running, queued) jobs assigned to this node, from the jobs table (the source of truth)."""
    by_status = dict(
        SynthesisJob.objects.filter(node__name=node_name, status__in=(JobStatus.RUNNING, JobStatus.QUEUED))
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    return int(by_status.get(JobStatus.RUNNING, 0)), int(by_status.get(JobStatus.QUEUED, 0))


def node_work_for_nodes(*, node_ids: list[int], now: dt.datetime) -> dict[int, NodeWork]:
    """The jobs app's answer to the fleet's stuck check: per node, jobs running past their
    deadline and when its longest-waiting queued job was queued."""
    overdue = dict(
        SynthesisJob.objects.filter(node_id__in=node_ids, status=JobStatus.RUNNING, deadline_at__lt=now)
        .values_list("node_id")
        .annotate(n=Count("id"))
        .values_list("node_id", "n")
    )
    oldest = dict(
        SynthesisJob.objects.filter(node_id__in=node_ids, status=JobStatus.QUEUED)
        .values_list("node_id")
        .annotate(at=Min("queued_at"))
        .values_list("node_id", "at")
    )
    return {
        node_id: NodeWork(running_overdue=int(overdue.get(node_id, 0)), oldest_queued_at=oldest.get(node_id))
        for node_id in set(overdue) | set(oldest)
    }


def job_ids_running_on_node(*, node_name: str) -> list[int]:
    return list(
        SynthesisJob.objects.filter(node__name=node_name, status=JobStatus.RUNNING)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def job_outcomes(*, job_ids: list[int], node_name: str) -> dict[int, str]:
    """What became of these jobs, for a restart's ack: their status, or ``requeued`` when one
    moved off ``node_name`` (or back to waiting) and is open elsewhere."""
    outcomes = {}
    for pk, status, node in SynthesisJob.objects.filter(pk__in=job_ids).values_list("pk", "status", "node__name"):
        open_elsewhere = status in (JobStatus.ACCEPTED, JobStatus.QUEUED) or (
            status == JobStatus.RUNNING and node != node_name
        )
        outcomes[pk] = "requeued" if open_elsewhere else status
    return outcomes


def job_prompt_audio_for_node(*, node_id: int, job_id: int) -> tuple[Path, int]:
    """The prompt audio file and voice version of a job queued or running on this node.

    NotFound otherwise (another node's job, a finished one, a preset voice): a GPU host fetches
    only what the job it was handed needs, and learns nothing of any other job.
    """
    job = (
        SynthesisJob.objects.select_related("voice")
        .filter(pk=job_id, node_id=node_id, status__in=(JobStatus.QUEUED, JobStatus.RUNNING))
        .first()
    )
    path = Path(job.voice.spec().prompt_audio_path) if job is not None and job.voice is not None else None
    if path is None or not path.is_file():
        raise NotFound(f"There is no job {job_id} with prompt audio open on this node.", code="not_found")
    return path, job.voice.version
