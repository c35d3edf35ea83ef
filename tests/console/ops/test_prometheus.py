"""/metrics as Prometheus users expect it: prometheus_client's exposition, promtool-clean,
counters and histograms per node, HTTP requests by route and status; the rules file valid."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from django.test import Client

from fleetagent.services import node_agent_connect, node_create, samples_ingest

ROOT = Path(__file__).resolve().parents[3]
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")

pytestmark = pytest.mark.django_db


@pytest.fixture
def fleet():
    node, _ = node_create(name="gpu-p", gpu_model="L20")
    node = node_agent_connect(
        node_id=node.pk,
        channel_name="c",
        hello={"nvml": True, "gpu_model": "NVIDIA L20", "hostname": "h-p", "gpus": [{"index": 0, "uuid": "GPU-abc"}]},
    )
    sample = {
        "ts": time.time(),
        "gpus": [
            {
                "index": 0,
                "utilization": 90.0,
                "vram_used_mb": 1000.0,
                "vram_total_mb": 46068.0,
                "xid_errors": 3,
                "last_xid": 79,
            }
        ],
        "node": {
            "jobs_running": 2,
            "jobs_total": {"succeeded": 10, "failed": 1},
            "job_seconds": {"buckets": [0, 1, 4, 8, 10, 10, 10, 10, 10], "sum": 14.5, "count": 10},
            "job_rtf": {"buckets": [2, 6, 10, 10, 10, 10, 10], "sum": 0.9, "count": 10},
        },
    }
    samples_ingest(batch=[(node.pk, sample)])
    return node


@pytest.fixture
def scrape(staff_user):
    client = Client()
    client.force_login(staff_user)
    return lambda: client.get("/metrics").content.decode()


def test_jobs_are_counters_and_histograms_by_node(fleet, scrape):
    text = scrape()
    assert 'voxfleet_jobs_total{node="gpu-p",outcome="succeeded"} 10.0' in text
    assert 'voxfleet_job_duration_seconds_bucket{le="2",node="gpu-p"} 8.0' in text
    assert 'voxfleet_job_duration_seconds_bucket{le="+Inf",node="gpu-p"} 10.0' in text
    assert 'voxfleet_job_rtf_count{node="gpu-p"} 10.0' in text
    assert "# TYPE voxfleet_job_rtf histogram" in text
    labels = 'Hostname="h-p",UUID="GPU-abc",device="nvidia0",gpu="0"'  # prometheus_client sorts labels
    assert f'DCGM_FI_DEV_XID_ERRORS{{{labels},node="gpu-p"}} 79.0' in text  # the last XID, as dcgm has it
    assert f'voxfleet_gpu_xid_errors_total{{{labels},node="gpu-p"}} 3.0' in text
    assert f'voxfleet_gpu_info{{{labels},model_name="NVIDIA L20",node="gpu-p"}} 1.0' in text
    assert "voxfleet_agents_connected 1.0" in text


def test_http_requests_are_counted_by_route_and_status(fleet, scrape, client):
    client.get("/ops/nodes/nope/")
    text = scrape()
    assert 'voxfleet_http_requests_total{method="GET",route="/ops/nodes/<slug:name>/",status="302"}' in text
    assert 'voxfleet_http_request_duration_seconds_bucket{le="0.005",route="/metrics"}' in text


@needs_promtool
def test_promtool_check_metrics_is_clean(fleet, scrape):
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=scrape(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_alert_rules_are_valid_and_dashboards_parse():
    import json

    rules = sorted((ROOT / "deploy" / "prometheus").glob("*.yml"))
    assert rules
    result = subprocess.run([PROMTOOL, "check", "rules", *map(str, rules)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    tests = ROOT / "deploy" / "prometheus" / "tests" / "voxfleet-rules.test.yaml"
    result = subprocess.run([PROMTOOL, "test", "rules", tests.name], cwd=tests.parent, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr  # the rules fire when they should
    for path in (ROOT / "deploy" / "grafana").glob("*.json"):
        board = json.loads(path.read_text())
        assert board["panels"] and all("expr" in t for p in board["panels"] for t in p.get("targets", []))
