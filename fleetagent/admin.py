from django.contrib import admin

from fleetagent.models import Node, NodeAction


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ["name", "state", "gpu_model", "gpu_count", "dedicated_tenant", "jobs_running", "last_seen_at"]
    list_filter = ["state", "gpu_model"]
    search_fields = ["name", "hostname"]
    # State and live counters come from the agent and the ops commands (drain/resume/restart
    # in the fleet dashboard, audited), never from a form.
    readonly_fields = [
        "state",
        "state_reason",
        "jobs_running",
        "jobs_queued",
        "nvml_available",
        "token_prefix",
        "token_hash",
        "token_revoked_at",
        "last_seen_at",
        "created_at",
        "agent_channel",
        "stats",
        "agent_version",
        "engine",
        "hostname",
    ]


@admin.register(NodeAction)
class NodeActionAdmin(admin.ModelAdmin):
    """The ops audit log: read-only here (actions are taken from the fleet dashboard or its API)."""

    list_display = ["requested_at", "node", "action", "requested_by", "outcome", "message"]
    list_filter = ["action", "outcome"]
    search_fields = ["node__name", "requested_by__username", "message"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
