from django.contrib import admin

from fleetagent.models import Node


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ["name", "state", "gpu_model", "gpu_count", "dedicated_tenant", "last_seen_at"]
    list_filter = ["state", "gpu_model"]
    search_fields = ["name", "hostname"]
    readonly_fields = ["token_prefix", "token_hash", "last_seen_at", "created_at"]
