"""Frames the console refused from a node: counted on the node, shown on its page and in /metrics."""

from __future__ import annotations

from django.db.models import F
from django.utils import timezone

from fleetagent.models import Node


def node_frames_refused(*, node_id: int, count: int, message: str) -> None:
    """Add ``count`` refused frames to the node's tally and keep the newest reason (for ops)."""
    Node.objects.filter(pk=node_id).update(
        frames_refused=F("frames_refused") + count, last_refusal=message[:500], last_refusal_at=timezone.now()
    )
