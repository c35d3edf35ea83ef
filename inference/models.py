"""Inference models: tenants' cloned voices and synthesis jobs."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from inference.choices import JobSource, JobStatus, VoiceGender  # noqa: F401 - re-exported for migrations and callers
from inference.engines.base import SEED_MAX, SEED_MIN, VoiceSpec


class Voice(models.Model):
    """A tenant's cloned voice: its prompt audio, optional transcript and extracted profile."""

    tenant = models.ForeignKey("billing.Tenant", on_delete=models.CASCADE, related_name="voices")
    name = models.CharField(max_length=64)
    language = models.CharField(max_length=8, default="zh", help_text="Default language: zh, yue, en, ja, ko.")
    gender = models.CharField(max_length=8, choices=VoiceGender.choices, default=VoiceGender.FEMALE)
    prompt_audio = models.CharField(max_length=255, help_text="Path of the prompt audio under VAR_DIR/voices.")
    prompt_transcript = models.TextField(blank=True)
    prompt_duration_s = models.FloatField(default=0.0)
    prompt_sample_rate = models.PositiveIntegerField(default=0)
    profile = models.JSONField(default=dict, help_text="VoiceProfile.to_dict(): speaker embedding, pitch, rate.")
    # GPU hosts cache the prompt audio per voice key and version (fleetagent.protocol, JOB):
    # whatever replaces the prompt audio or the profile must bump it, or hosts keep the old take.
    version = models.PositiveIntegerField(default=1, help_text="Bumped whenever the prompt audio or profile changes.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="voice_unique_tenant_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.tenant})"

    @property
    def key(self) -> str:
        """The public id and the engine's voice key (stable: jobs store it)."""
        return f"tenant-voice-{self.pk}"

    def spec(self) -> VoiceSpec:
        return VoiceSpec(
            key=self.key,
            language=self.language,
            gender=self.gender,
            profile=self.profile or None,
            prompt_audio_path=str(settings.VAR_DIR / "voices" / self.prompt_audio),
            prompt_transcript=self.prompt_transcript or None,
            display_name=self.name,
        )


OPEN_STATUSES = (JobStatus.ACCEPTED, JobStatus.QUEUED, JobStatus.RUNNING)
FINISHED_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class SynthesisJob(models.Model):
    """One metered synthesis request, from acceptance (tokens reserved) to settled audio or release."""

    tenant = models.ForeignKey("billing.Tenant", on_delete=models.CASCADE, related_name="synthesis_jobs")
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.ACCEPTED)
    source = models.CharField(max_length=16, choices=JobSource.choices, default=JobSource.API)
    voice = models.ForeignKey(Voice, on_delete=models.SET_NULL, null=True, blank=True, related_name="jobs")
    voice_key = models.CharField(max_length=64, help_text="Preset key or tenant-voice-<id>.")
    voice_name = models.CharField(max_length=128, blank=True)
    text = models.TextField()
    instruction = models.TextField(blank=True)
    language = models.CharField(max_length=8)
    seed = models.PositiveIntegerField()
    speed = models.FloatField(default=1.0)
    tokens = models.PositiveIntegerField()
    reservation_id = models.BigIntegerField(null=True, blank=True)
    # NULL (not "") means "no key", so the partial unique constraint ignores keyless jobs.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    node = models.ForeignKey(
        "fleetagent.Node", on_delete=models.SET_NULL, null=True, blank=True, related_name="synthesis_jobs"
    )
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Times a node claimed the job.")
    requeues = models.PositiveSmallIntegerField(default=0, help_text="Times the job was moved off a dead node.")
    api_key = models.ForeignKey("billing.ApiKey", on_delete=models.SET_NULL, null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    # Jobs a GPU host runs with no database (protocol v3) are leased: the host renews the lease
    # while it runs the job, and a lease that ran out is reclaimed (inference.services.recovery).
    # NULL for jobs claimed in the database (older agents, the embedded executor): their node's
    # heartbeat decides.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    gpu_seconds = models.FloatField(null=True, blank=True, help_text="Engine time on the node (unit economics).")
    audio_seconds = models.FloatField(null=True, blank=True)
    rtf = models.FloatField(null=True, blank=True, help_text="Real-time factor: engine time / audio duration.")
    engine_version = models.CharField(max_length=64, blank=True)
    output_path = models.CharField(max_length=500, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The job list's own order (newest first, id breaking ties): pages and the dashboard's
            # recent jobs walk this index instead of sorting all of a tenant's jobs.
            models.Index(fields=["tenant", "-created_at", "-id"], name="job_tenant_newest"),
            models.Index(fields=["status", "node"]),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="job_unique_tenant_idempotency_key",
            ),
            models.CheckConstraint(
                condition=Q(seed__gte=SEED_MIN) & Q(seed__lte=SEED_MAX),
                name="job_seed_in_range",
            ),
        ]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES


class VoiceAlias(models.Model):
    """Another name for a preset voice, e.g. OpenAI's ``alloy`` (admins edit the mapping)."""

    name = models.CharField(max_length=64, unique=True, help_text="Lower-case, as clients send it (e.g. alloy).")
    preset_key = models.CharField(
        max_length=64, help_text="The preset voice it stands for (zh-female, en-male, …; GET /api/v1/voices)."
    )

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "voice aliases"

    def __str__(self) -> str:
        return f"{self.name} → {self.preset_key}"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        from inference.engines.base import PRESET_VOICES_BY_KEY

        self.name = (self.name or "").strip().lower()
        if self.preset_key not in PRESET_VOICES_BY_KEY:
            raise ValidationError(
                {"preset_key": f"Unknown preset; choose one of {', '.join(sorted(PRESET_VOICES_BY_KEY))}."}
            )
