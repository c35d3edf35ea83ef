"""A node's per-GPU series: 1 s rows within the hour; 1 min rollups (plus the last hour per minute) up to 30 days."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from fleetagent.models import GpuSample
from fleetagent.selectors import gpu_series
from fleetagent.services import node_create

pytestmark = pytest.mark.django_db


def test_long_windows_join_rollups_and_the_last_hour_per_minute():
    node, _ = node_create(name="gpu-s")
    now = timezone.now().replace(second=30, microsecond=0)
    for days in (29, 2):
        GpuSample.objects.create(
            node=node, gpu_index=0, at=now - timedelta(days=days), resolution_s=60, utilization=10.0 * days
        )
    for seconds in (5, 10):  # two raw rows in the current minute: one point, their mean
        GpuSample.objects.create(
            node=node, gpu_index=0, at=now - timedelta(seconds=seconds), utilization=float(seconds)
        )
    month = gpu_series(node=node, minutes=30 * 24 * 60)
    assert month["resolution_s"] == 60
    assert month["gpus"]["0"]["utilization"] == [290.0, 20.0, 7.5]
    hour = gpu_series(node=node, minutes=60)
    assert hour["resolution_s"] == 1 and hour["gpus"]["0"]["utilization"] == [10.0, 5.0]
    assert set(hour["gpus"]["0"]) == {"t", "utilization", "vram_used_mb", "vram_total_mb", "temperature_c", "power_w"}
