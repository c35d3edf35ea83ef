"""Input and output shapes of the /api/v1 synthesis endpoints (also the OpenAPI schema)."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import OpenApiExample, extend_schema_serializer
from rest_framework import serializers

from billing.selectors import USAGE_DAYS_MAX
from inference.choices import JobStatus, VoiceGender
from inference.engines.base import SEED_MAX, SEED_MIN, SPEED_MAX, SPEED_MIN
from inference.models import SynthesisJob
from inference.selectors import ResolvedVoice
from inference.text import LANGUAGES
from inference.text.normalize import INSTRUCTION_MAX_CHARS, TEXT_MAX_CHARS

# Page size of GET /api/v1/jobs: ?limit defaults to this and may not exceed the cap.
JOBS_PAGE_DEFAULT = 50
JOBS_PAGE_MAX = 100


class VoiceOutSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="Use as `voice` in synthesis requests (a name works too).")
    name = serializers.CharField()
    preset = serializers.BooleanField(help_text="Preset voices are available to every tenant and read-only.")
    language = serializers.CharField()
    gender = serializers.CharField()
    transcript = serializers.CharField(allow_blank=True)
    prompt_duration_s = serializers.FloatField(allow_null=True)
    created_at = serializers.DateTimeField(allow_null=True)

    @staticmethod
    def from_resolved(resolved: ResolvedVoice) -> dict:
        voice = resolved.voice
        return {
            "id": resolved.id,
            "name": resolved.spec.display_name,
            "preset": voice is None,
            "language": resolved.spec.language,
            "gender": resolved.spec.gender,
            "transcript": voice.prompt_transcript if voice else "",
            "prompt_duration_s": voice.prompt_duration_s if voice else None,
            "created_at": voice.created_at if voice else None,
        }


class VoiceCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=64)
    audio = serializers.FileField(
        help_text="Binary audio file: 3–15 s of speech (at most 30 s in all), 16–192 kHz, mono or stereo, "
        "wav/flac/mp3/ogg, ≤ 10 MB."
    )
    transcript = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)
    language = serializers.ChoiceField(choices=LANGUAGES, required=False)
    gender = serializers.ChoiceField(choices=VoiceGender.values, required=False)


class VoiceRenameSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=64)


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "Mandarin preset voice",
            value={"input": "你好，欢迎使用语音合成。", "voice": "zh-female", "seed": 42},
            request_only=True,
        )
    ]
)
class JobCreateSerializer(serializers.Serializer):
    # The schema states the limits the services enforce (text front end, seed and speed
    # rules); the services check again after normalization.
    input = serializers.CharField(
        trim_whitespace=False,
        max_length=TEXT_MAX_CHARS * 4,
        help_text=f"Text to speak, 1–{TEXT_MAX_CHARS} characters after normalization, with at least one word, "
        "number or character (not only punctuation or emoji).",
    )
    voice = serializers.CharField(max_length=128, help_text="A voice id or name from GET /api/v1/voices.")
    instructions = serializers.CharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        trim_whitespace=False,
        max_length=INSTRUCTION_MAX_CHARS * 4,
        help_text=f"At most {INSTRUCTION_MAX_CHARS} characters after normalization.",
    )
    seed = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=SEED_MIN,
        max_value=SEED_MAX,
        help_text=f"{SEED_MIN}–{SEED_MAX:,}; drawn and returned when omitted.",
    )
    speed = serializers.FloatField(
        required=False,
        allow_null=True,
        min_value=SPEED_MIN,
        max_value=SPEED_MAX,
        help_text=f"{SPEED_MIN}–{SPEED_MAX}; default 1.",
    )


class JobListQuerySerializer(serializers.Serializer):
    """Query parameters of GET /api/v1/jobs: anything else than these values is a 400."""

    status = serializers.ChoiceField(choices=JobStatus.values, required=False, help_text="Only jobs in this state.")
    limit = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=JOBS_PAGE_MAX,
        default=JOBS_PAGE_DEFAULT,
        help_text=f"Page size, at most {JOBS_PAGE_MAX}.",
    )
    offset = serializers.IntegerField(required=False, min_value=0, default=0, help_text="Jobs to skip.")


class UsageQuerySerializer(serializers.Serializer):
    days = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=USAGE_DAYS_MAX,
        default=30,
        help_text=f"Days to cover, today included (1–{USAGE_DAYS_MAX}).",
    )


class JobErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class JobVoiceSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()


class JobOutSerializer(serializers.ModelSerializer):
    input = serializers.CharField(source="text")
    instructions = serializers.CharField(source="instruction")
    voice = serializers.SerializerMethodField()
    node = serializers.SlugRelatedField(slug_field="name", read_only=True)
    error = serializers.SerializerMethodField()
    audio_url = serializers.SerializerMethodField()

    class Meta:
        model = SynthesisJob
        fields = [
            "id",
            "status",
            "input",
            "instructions",
            "voice",
            "language",
            "seed",
            "speed",
            "tokens",
            "node",
            "attempts",
            "requeues",
            "created_at",
            "queued_at",
            "started_at",
            "finished_at",
            "deadline_at",
            "gpu_seconds",
            "audio_seconds",
            "rtf",
            "engine_version",
            "error",
            "audio_url",
        ]
        read_only_fields = fields

    def get_voice(self, job: SynthesisJob) -> JobVoiceSerializer:
        return {"id": job.voice_key, "name": job.voice_name}

    def get_error(self, job: SynthesisJob) -> JobErrorSerializer(allow_null=True):
        if not job.error_code and not job.error:
            return None
        return {"code": job.error_code, "message": job.error}

    def get_audio_url(self, job: SynthesisJob) -> str | None:
        if job.status != JobStatus.SUCCEEDED:
            return None
        return reverse("api-job-audio", kwargs={"job_id": job.pk})


class QuotaSerializer(serializers.Serializer):
    remaining = serializers.IntegerField(help_text="Tokens that can still be spent (allowance + top-ups).")
    plan_code = serializers.CharField()
    allowance_tokens = serializers.IntegerField()
    allowance_remaining = serializers.IntegerField()
    topup_remaining = serializers.IntegerField()
    reserved = serializers.IntegerField(help_text="Tokens held by jobs that have not finished.")
    used = serializers.IntegerField()
    period_start = serializers.DateTimeField()
    resets_at = serializers.DateTimeField()
    overage_allowed = serializers.BooleanField()


class UsageDaySerializer(serializers.Serializer):
    date = serializers.DateField()
    tokens = serializers.IntegerField()
    jobs = serializers.IntegerField()
    audio_seconds = serializers.FloatField()
    gpu_seconds = serializers.FloatField()


class UsageSerializer(serializers.Serializer):
    since = serializers.DateTimeField()
    days = UsageDaySerializer(many=True)
    tokens_charged = serializers.IntegerField()
    jobs_by_status = serializers.DictField(child=serializers.IntegerField())
    quota = QuotaSerializer()


class JobPageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = JobOutSerializer(many=True)
