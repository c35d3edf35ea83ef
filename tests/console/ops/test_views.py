from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from fleetagent.models import Node, NodeAction
from fleetagent.services import node_agent_connect, node_create, samples_ingest

pytestmark = pytest.mark.django_db


@pytest.fixture
def gpu_node():
    node, _ = node_create(name="gpu-a", gpu_model="A10")
    node = node_agent_connect(
        node_id=node.pk,
        channel_name="chan",
        hello={"nvml": True, "gpu_model": "NVIDIA A10", "hostname": "h1", "gpus": [{}]},
    )
    sample = {
        "ts": time.time(),
        "gpus": [
            {
                "index": 0,
                "utilization": 55.0,
                "memory_utilization": 21.0,
                "vram_used_mb": 6100.0,
                "vram_total_mb": 23028.0,
                "temperature_c": 91.0,
                "power_w": 120.5,
                "power_limit_w": 150.0,
                "sm_clock_mhz": 1695.0,
                "throttle_reasons": 4,
                "ecc_errors": 0,
                "xid_errors": 2,
            }
        ],
        "node": {"jobs_running": 1, "jobs_queued": 3, "success_rate_5m": 0.75, "latency_p95_s": 2.5},
    }
    samples_ingest(batch=[(node.pk, sample)])
    return node


OPS_PAGES = ["/ops/", "/ops/nodes/gpu-a/"]
OPS_API = ["/ops/api/nodes/", "/ops/api/nodes/gpu-a/actions/", "/ops/api/nodes/gpu-a/series/"]


@pytest.mark.parametrize("url", OPS_PAGES)
def test_pages_send_anonymous_users_to_log_in(client, gpu_node, url):
    response = client.get(url)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.parametrize("url", OPS_PAGES + OPS_API)
def test_outsiders_get_403(outsider_client, gpu_node, url):
    assert outsider_client.get(url).status_code == 403


def test_outsider_cannot_restart(outsider_client, gpu_node):
    response = outsider_client.post(
        "/ops/api/nodes/gpu-a/actions/", {"action": "restart"}, content_type="application/json"
    )
    assert response.status_code == 403
    assert not NodeAction.objects.exists()


def test_dashboard_renders_nodes_alerts_and_local_plotly(staff_client, gpu_node):
    body = staff_client.get("/ops/").content.decode()
    assert "cdn" not in body.lower() and "plotly" not in body  # the fleet page draws its own small charts
    assert "1 online" in body and "/ws/ops/fleet/" in body  # the summary line; nodes come live
    assert "js/ops_fleet.js" in body and 'id="gpu-wall"' in body  # GPU alerts come live (websocket snapshot)
    assert 'id="confirm-action"' in body  # actions ask for confirmation


def test_dashboard_lists_offline_and_stuck_nodes_first(staff_client, gpu_node):
    Node.objects.filter(pk=gpu_node.pk).update(state="stuck", state_reason="1 job(s) running past their deadline")
    body = staff_client.get("/ops/").content.decode()
    assert "past their deadline" in body and "<strong>stuck</strong>" in body


def test_node_detail_shows_series_and_audit(staff_client, gpu_node):
    response = staff_client.get("/ops/nodes/gpu-a/")
    assert response.status_code == 200
    assert "/static/vendor/plotly/plotly.min.js" in response.content.decode()  # served locally, no CDN
    assert response.context["series"]["gpus"]["0"]["utilization"] == [55.0]
    assert staff_client.get("/ops/nodes/nope/").status_code == 404


def test_api_nodes_lists_live_figures(staff_client, gpu_node):
    data = staff_client.get("/ops/api/nodes/").json()
    (node,) = data["nodes"]
    assert node["name"] == "gpu-a" and node["state"] == "online"
    assert node["stats"]["jobs_queued"] == 3 and node["gpus"][0]["utilization"] == 55.0
    assert {a["kind"] for a in data["alerts"]} == {"xid", "overheat"}


def test_api_action_is_accepted_and_audited(staff_client, staff_user, gpu_node):
    response = staff_client.post("/ops/api/nodes/gpu-a/actions/", {"action": "drain"}, content_type="application/json")
    assert response.status_code == 202
    body = response.json()
    assert body["outcome"] == "pending" and body["requested_by"] == "staff"
    assert staff_client.get(f"/ops/api/actions/{body['id']}/").json()["action"] == "drain"
    assert Node.objects.get().state == "draining"


def test_api_rejects_unknown_action(staff_client, gpu_node):
    response = staff_client.post("/ops/api/nodes/gpu-a/actions/", {"action": "reboot"}, content_type="application/json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request"


def test_api_restart_with_agent_gone_is_409_with_a_clear_message(staff_client, gpu_node):
    Node.objects.filter(pk=gpu_node.pk).update(last_seen_at=timezone.now() - timedelta(seconds=60), agent_channel="")
    response = staff_client.post(
        "/ops/api/nodes/gpu-a/actions/", {"action": "restart"}, content_type="application/json"
    )
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "agent_unavailable" and "agent is not connected" in error["message"]
    assert NodeAction.objects.get().outcome == "refused"


def test_metrics_refuses_anonymous_and_outsiders(client, outsider_client, gpu_node):
    assert client.get("/metrics").status_code == 401
    assert outsider_client.get("/metrics").status_code == 403


def test_metrics_token(client, gpu_node, settings):
    settings.METRICS_TOKEN = "s3cret-metrics-token"
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-metrics-token")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain; version=0.0.4")


def test_metrics_use_dcgm_names_with_node_and_gpu_labels(staff_client, gpu_node):
    text = staff_client.get("/metrics").content.decode()
    labels = '{Hostname="h1",UUID="",device="nvidia0",gpu="0",node="gpu-a"}'
    assert f"DCGM_FI_DEV_GPU_UTIL{labels} 55.0" in text
    assert f"DCGM_FI_DEV_FB_USED{labels} 6100.0" in text
    assert f"DCGM_FI_DEV_FB_FREE{labels} 16928.0" in text
    assert f"DCGM_FI_DEV_POWER_USAGE{labels} 120.5" in text
    # dcgm's meaning: the value of the last XID (none reported here), not a count.
    assert f"DCGM_FI_DEV_XID_ERRORS{labels} 0.0" in text
    assert f"voxfleet_gpu_xid_errors_total{labels} 2.0" in text
    assert "# TYPE DCGM_FI_DEV_GPU_UTIL gauge" in text
    assert 'voxfleet_node_up{node="gpu-a"} 1.0' in text
    assert 'voxfleet_node_state{node="gpu-a",state="online"} 1.0' in text
    assert 'voxfleet_node_jobs_queued{node="gpu-a"} 3.0' in text
    assert "latency_p95" not in text and "success_rate" not in text  # no precomputed percentiles
