"""/metrics as Prometheus users expect it: prometheus_client's exposition, promtool-clean,
counters and histograms per node, HTTP requests by route and status, tokens charged by plan;
the rules file valid."""

from __future__ import annotations

import shutil
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone

from billing.selectors import tokens_charged_by_plan
from billing.services import plan_change, reservation_create, reservation_release, reservation_settle
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


def _charge(tenant, tokens: int, *, at, settle: bool = True) -> None:
    reservation = reservation_create(tenant=tenant, tokens=tokens, now=at)
    if settle:
        reservation_settle(reservation_id=reservation.pk, gpu_seconds=1.0, now=at)
    else:
        reservation_release(reservation_id=reservation.pk, reason="failed", now=at)


def test_tokens_charged_by_plan_are_counters_from_the_ledger(make_tenant, scrape):
    now = timezone.now()
    free, pro = make_tenant("free"), make_tenant("pro")
    _charge(free, 40, at=now)
    _charge(pro, 300, at=now)
    _charge(pro, 25, at=now)
    _charge(pro, 1000, at=now, settle=False)  # released: held, never charged
    text = scrape()
    assert "# TYPE voxfleet_tokens_charged_total counter" in text
    assert 'voxfleet_tokens_charged_total{plan="free"} 40.0' in text
    assert 'voxfleet_tokens_charged_total{plan="pro"} 325.0' in text
    assert 'voxfleet_tokens_charged_total{plan="enterprise"} 0.0' in text  # every plan, charged or not


def test_a_plan_change_moves_no_charged_tokens_between_plans(make_tenant):
    now = timezone.now()
    tenant = make_tenant("free")
    _charge(tenant, 40, at=now - timedelta(seconds=30))
    plan_change(tenant=tenant, plan_code="pro", now=now - timedelta(seconds=20))  # an upgrade applies at once
    _charge(tenant, 7, at=now - timedelta(seconds=10))
    charged = tokens_charged_by_plan()
    assert (charged["free"], charged["pro"]) == (40, 7)  # the free-plan history stays free's


def test_tokens_charged_by_plan_costs_the_same_queries_for_any_number_of_tenants(
    make_tenant, django_assert_num_queries
):
    now = timezone.now()
    for i in range(12):
        tenant = make_tenant("pro" if i % 2 else "free")
        _charge(tenant, 10 + i, at=now - timedelta(seconds=30))
        if i % 3 == 0:
            plan_change(tenant=tenant, plan_code="pro" if tenant.plan.code == "free" else "free", now=now)
    with django_assert_num_queries(3):  # settlements of steady tenants, of moved ones, the catalogue
        charged = tokens_charged_by_plan()
    assert sum(charged.values()) == sum(10 + i for i in range(12))
