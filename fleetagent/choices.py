"""The fleet's enumerations (node states, ops actions and outcomes): its public constants."""

from __future__ import annotations

from django.db import models


class NodeState(models.TextChoices):
    ONLINE = "online", "online"
    DRAINING = "draining", "draining"
    OFFLINE = "offline", "offline"
    STUCK = "stuck", "stuck"
    RESTARTING = "restarting", "restarting"


class NodeActionKind(models.TextChoices):
    DRAIN = "drain", "drain"
    RESUME = "resume", "resume"
    RESTART = "restart", "restart"


class NodeActionOutcome(models.TextChoices):
    PENDING = "pending", "pending"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"
    REFUSED = "refused", "refused"
    TIMED_OUT = "timed_out", "timed out"
