"""A separately started agent process joins the console, serves jobs from its queue, and shows
up in /metrics (PostgreSQL + Redis: the real multi-process shape; no doubles anywhere)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from tests.support.live_server import ROOT, LiveServer, _postgres_database, free_port, uvicorn_command

pytestmark = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres") or not os.environ.get("REDIS_URL"),
    reason="the separate agent process needs a shared PostgreSQL database and Redis (the broker)",
)


def test_agent_process_joins_serves_its_queue_and_reports_metrics(tmp_path):
    node_name = f"agent-{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    base = os.environ["DATABASE_URL"]
    env["DATABASE_URL"], drop = _postgres_database(base, f"{base.rsplit('/', 1)[-1].split('?')[0]}_agent_{os.getpid()}")
    env.update(
        {
            "VOXFLEET_EMBEDDED_NODE": node_name,  # seed_demo registers this node and prints its token
            "VOXFLEET_VAR_DIR": str(tmp_path / "var"),
            "OUTPUTS_DIR": str(tmp_path / "outputs"),
            "METRICS_TOKEN": "metrics-test-token",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
        }
    )
    url = f"http://127.0.0.1:{free_port()}"
    server = LiveServer(url=url, env=env, data={}, workdir=tmp_path, redis=True, drop_database=drop)
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
        seeded = subprocess.run(
            [sys.executable, "manage.py", "seed_demo", "--json"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        demo = json.loads(seeded.stdout)
        [node] = demo["nodes"]
        pro_key = next(t["api_key"] for t in demo["tenants"] if t["plan"] == "Pro")
        port = int(url.rsplit(":", 1)[1])
        server.spawn("console", uvicorn_command(port, lifespan=None, log_level="info"))
        server.spawn("agent", [sys.executable, "-m", "fleetagent", "--console", url, "--token", node["token"]])

        def _wait(predicate, what: str):
            return server.wait_ready(predicate, what=what, timeout_s=90.0, interval_s=0.5)

        def metrics() -> str:
            response = httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer metrics-test-token"}, timeout=10)
            return response.text if response.status_code == 200 else ""

        # The agent registers, heartbeats in CPU mode (no NVML here) and the node goes online.
        _wait(
            lambda: f'voxfleet_node_state{{node="{node_name}",state="online"}} 1' in metrics(),
            "the node to be online",
        )
        # Its 1 Hz samples (CPU and RAM, as it has no NVML) reach the console and /metrics.
        _wait(lambda: f'voxfleet_node_cpu_percent{{node="{node_name}"}}' in metrics(), "CPU samples")

        def speak():
            response = httpx.post(
                f"{url}/v1/audio/speech",
                headers={"Authorization": f"Bearer {pro_key}"},
                json={
                    "model": "cosyvoice-3",
                    "input": "你好，欢迎使用语音合成。",
                    "voice": "zh-female",
                    "seed": 7,
                    "response_format": "wav",  # mp3 is the default since the streaming change
                },
                timeout=60,
            )
            return response if response.status_code == 200 else None

        # The job goes through the node's Celery queue to the agent's worker and back.
        response = _wait(speak, "a synthesis served by the agent's worker")
        assert response.content[:4] == b"RIFF" and len(response.content) > 20_000
        job = httpx.get(
            f"{url}/api/v1/jobs/{response.headers['X-Job-Id']}",
            headers={"Authorization": f"Bearer {pro_key}"},
            timeout=10,
        ).json()
        assert job["status"] == "succeeded" and job["node"] == node_name

        # The agent streams the job's outcome; the console exports it (a counter by outcome).
        _wait(
            lambda: f'voxfleet_jobs_total{{node="{node_name}",outcome="succeeded"}} 1.0' in metrics(),
            "the node's succeeded-jobs counter in /metrics",
        )
    finally:
        server.stop()  # and drops its database
