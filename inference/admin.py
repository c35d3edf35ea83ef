"""Admin for voices and synthesis jobs: read-mostly; money and state change through services."""

from __future__ import annotations

from django.contrib import admin, messages

from inference.models import OPEN_STATUSES, SynthesisJob, Voice, VoiceAlias
from inference.services import job_fail


@admin.register(Voice)
class VoiceAdmin(admin.ModelAdmin):
    list_display = ("name", "tenant", "language", "gender", "prompt_duration_s", "created_at")
    list_filter = ("language", "gender")
    search_fields = ("name", "tenant__name")
    readonly_fields = ("prompt_audio", "prompt_duration_s", "prompt_sample_rate", "profile", "created_at", "updated_at")


@admin.register(VoiceAlias)
class VoiceAliasAdmin(admin.ModelAdmin):
    """OpenAI's voice names (and any others) mapped to presets; edited here, used by voice_resolve."""

    list_display = ("name", "preset_key")
    search_fields = ("name", "preset_key")


@admin.action(description="Fail selected open jobs and release their tokens")
def fail_and_release(modeladmin, request, queryset):
    closed = 0
    for job in queryset.select_related("tenant__plan").filter(status__in=OPEN_STATUSES):
        closed += job_fail(job=job, code="failed_by_admin", message=f"Failed by {request.user} in the admin.")
    modeladmin.message_user(request, f"{closed} job(s) failed; their reservations were released.", messages.SUCCESS)


@admin.register(SynthesisJob)
class SynthesisJobAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "tenant",
        "status",
        "voice_name",
        "language",
        "tokens",
        "seed",
        "node",
        "gpu_seconds",
        "rtf",
        "created_at",
    )
    list_filter = ("status", "source", "language", "node")
    search_fields = ("id", "tenant__name", "text")
    date_hierarchy = "created_at"
    actions = [fail_and_release]
    list_select_related = ("tenant", "node")

    def get_readonly_fields(self, request, obj=None):
        # Status, tokens and the reservation move only through services (never charged twice).
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a job is the record of a charge (its reservation and ledger rows)
