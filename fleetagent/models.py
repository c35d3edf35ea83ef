"""Fleet models: GPU hosts (nodes) and the credentials their agents present."""

from __future__ import annotations

from django.db import models

from fleetagent.choices import NodeActionKind, NodeActionOutcome, NodeState  # noqa: F401 - re-exported for migrations and callers


class Node(models.Model):
    """One GPU host running a fleet agent; dedicated nodes serve a single enterprise tenant."""

    name = models.SlugField(max_length=64, unique=True)
    token_prefix = models.CharField(max_length=16, unique=True)
    token_hash = models.CharField(max_length=64)
    token_revoked_at = models.DateTimeField(null=True, blank=True)
    dedicated_tenant = models.ForeignKey(
        "billing.Tenant", on_delete=models.PROTECT, null=True, blank=True, related_name="dedicated_nodes"
    )
    state = models.CharField(max_length=16, choices=NodeState.choices, default=NodeState.OFFLINE)
    gpu_model = models.CharField(max_length=64, blank=True, help_text="e.g. A10, L20, H100; empty for CPU hosts.")
    gpu_count = models.PositiveSmallIntegerField(default=0)
    hostname = models.CharField(max_length=255, blank=True)
    engine = models.CharField(max_length=64, blank=True)
    agent_version = models.CharField(max_length=32, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Live figures from the agent's last heartbeat (the dispatcher's "least busy" reads these).
    jobs_running = models.PositiveIntegerField(default=0)
    jobs_queued = models.PositiveIntegerField(default=0)
    nvml_available = models.BooleanField(default=False, help_text="False: CPU mode, reporting CPU and RAM.")
    stats = models.JSONField(default=dict, blank=True, help_text="Success rate, latency and RTF from the agent.")
    state_reason = models.CharField(max_length=255, blank=True)
    # Channels channel name of the connected agent consumer; empty when no agent is connected.
    agent_channel = models.CharField(max_length=255, blank=True)
    # The desired state, which the console owns: set by a drain, cleared by a resume. A drained
    # node comes back draining after a disconnect, an agent restart or a console restart.
    drained = models.BooleanField(default=False, help_text="Ops drained it: it takes no jobs until resumed.")
    protocol_version = models.PositiveSmallIntegerField(default=0, help_text="Agent protocol of its last hello.")
    gpus = models.JSONField(default=list, blank=True, help_text="GPUs from the agent's hello: index, name, UUID.")
    # Frames the console refused from this node (schema, size, rate): counted, never used.
    frames_refused = models.PositiveBigIntegerField(default=0)
    last_refusal = models.CharField(max_length=500, blank=True)
    last_refusal_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def queue_name(self) -> str:
        """The Celery queue this node's worker consumes (one queue per host)."""
        return f"node.{self.name}"


class GpuSample(models.Model):
    """One reading of one GPU (or, with gpu_index -1, the host CPU/RAM of a CPU-mode node)."""

    RESOLUTION_RAW = 1
    RESOLUTION_MINUTE = 60

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="samples")
    gpu_index = models.SmallIntegerField(help_text="-1: host CPU/RAM of a node without NVML.")
    at = models.DateTimeField()
    # 1 s raw samples are kept an hour; 60 s rollups (means, max for errors) are kept 30 days.
    resolution_s = models.PositiveSmallIntegerField(default=RESOLUTION_RAW)
    utilization = models.FloatField(default=0.0)
    memory_utilization = models.FloatField(default=0.0)
    vram_used_mb = models.FloatField(default=0.0)
    vram_total_mb = models.FloatField(default=0.0)
    temperature_c = models.FloatField(null=True, blank=True)
    power_w = models.FloatField(null=True, blank=True)
    power_limit_w = models.FloatField(null=True, blank=True)
    sm_clock_mhz = models.FloatField(null=True, blank=True)
    throttle_reasons = models.BigIntegerField(default=0)
    ecc_errors = models.BigIntegerField(default=0)
    xid_errors = models.BigIntegerField(default=0)
    last_xid = models.IntegerField(null=True, blank=True, help_text="Newest XID code (dcgm's XID meaning).")

    class Meta:
        indexes = [
            models.Index(fields=["resolution_s", "at"]),
            models.Index(fields=["node", "resolution_s", "at"]),
        ]

    def __str__(self) -> str:
        return f"{self.node_id}/gpu{self.gpu_index}@{self.at:%H:%M:%S}"


class NodeAction(models.Model):
    """Audit log entry: an ops command on a node, who asked, when, and what the agent answered."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="actions")
    action = models.CharField(max_length=16, choices=NodeActionKind.choices)
    requested_by = models.ForeignKey(
        "auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="node_actions"
    )
    requested_at = models.DateTimeField(auto_now_add=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=NodeActionOutcome.choices, default=NodeActionOutcome.PENDING)
    detail = models.JSONField(default=dict, blank=True)
    message = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} {self.node_id} ({self.outcome})"
