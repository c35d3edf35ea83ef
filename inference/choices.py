"""Inference's enumerations (voice genders, job statuses and sources): its public constants."""

from __future__ import annotations

from django.db import models


class VoiceGender(models.TextChoices):
    FEMALE = "female", "female"
    MALE = "male", "male"


class JobStatus(models.TextChoices):
    ACCEPTED = "accepted", "accepted"
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"
    CANCELLED = "cancelled", "cancelled"


class JobSource(models.TextChoices):
    OPENAI = "openai", "/v1/audio/speech"
    API = "api", "/api/v1/jobs"
    PORTAL = "portal", "portal"
