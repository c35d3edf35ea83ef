"""Fleet models: GPU hosts (nodes) and the credentials their agents present."""

from __future__ import annotations

from django.db import models


class NodeState(models.TextChoices):
    ONLINE = "online", "online"
    DRAINING = "draining", "draining"
    OFFLINE = "offline", "offline"
    STUCK = "stuck", "stuck"
    RESTARTING = "restarting", "restarting"


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

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def queue_name(self) -> str:
        """The Celery queue this node's worker consumes (one queue per host)."""
        return f"node.{self.name}"
