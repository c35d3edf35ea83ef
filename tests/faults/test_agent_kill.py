"""Fault injection: the agent SIGKILLed mid-job and restarted; a clean stop (issue 10, item 4).

Real processes (uvicorn console, Celery beat, ``python -m fleetagent``) on PostgreSQL and
Redis. Run with ``pytest -m faults``; prints a table of each fault and how long its job took
to reach an end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.support.live_server import ROOT, LiveServer, _postgres_database, free_port, uvicorn_command

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(
        not os.environ.get("DATABASE_URL", "").startswith("postgres") or not os.environ.get("REDIS_URL"),
        reason="fault injection needs a shared PostgreSQL database and Redis (real processes)",
    ),
]

# Sentences enough that the CPU engine is still on the job when the agent is killed.
TEXT = "你好，欢迎使用语音合成。" * 16
# Every job must end this soon after its fault (issue 10: within 30 s, never at its 120 s deadline).
END_WITHIN_S = 30.0


def test_agent_killed_mid_job_and_restarted_ends_the_job_within_seconds(tmp_path):
    node_name = f"faults-{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    base = os.environ["DATABASE_URL"]
    env["DATABASE_URL"], drop = _postgres_database(
        base, f"{base.rsplit('/', 1)[-1].split('?')[0]}_faults_{os.getpid()}"
    )
    env.update(
        {
            "VOXFLEET_EMBEDDED_NODE": node_name,
            "VOXFLEET_VAR_DIR": str(tmp_path / "var"),
            "OUTPUTS_DIR": str(tmp_path / "outputs"),
            "LOG_LEVEL": "INFO",
            "PYTHONPATH": str(ROOT),
        }
    )
    url = f"http://127.0.0.1:{free_port()}"
    server = LiveServer(url=url, env=env, data={}, workdir=tmp_path, redis=True, drop_database=drop)
    rows: list[tuple[str, str, float, str]] = []
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
        demo = json.loads(
            subprocess.run(
                [sys.executable, "manage.py", "seed_demo", "--json"],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        [node] = demo["nodes"]
        key = next(t["api_key"] for t in demo["tenants"] if t["plan"] == "Pro")
        auth = {"Authorization": f"Bearer {key}"}
        port = int(url.rsplit(":", 1)[1])
        server.spawn("console", uvicorn_command(port, lifespan=None, log_level="info"))
        server.spawn("beat", [sys.executable, "-m", "celery", "-A", "console", "beat", "-l", "warning",
                              "-s", str(tmp_path / "beat-schedule")])  # fmt: skip
        agent_args = [sys.executable, "-m", "fleetagent", "--console", url, "--token", node["token"]]
        agent = server.spawn("agent", agent_args)

        def job(job_id: int) -> dict:
            return httpx.get(f"{url}/api/v1/jobs/{job_id}", headers=auth, timeout=10).json()

        def submit() -> int:
            response = httpx.post(
                f"{url}/api/v1/jobs", headers=auth, json={"input": TEXT, "voice": "zh-female"}, timeout=30
            )
            assert response.status_code in (200, 201, 202), response.text
            return response.json()["id"]

        def up() -> bool:
            try:
                return server.healthz()
            except httpx.HTTPError:
                return False

        server.wait_ready(up, what="the console", timeout_s=90, interval_s=0.3)
        # Warm: one job served end to end by the agent's worker.
        first = server.wait_ready(lambda: _try(submit), what="a first job accepted", timeout_s=90, interval_s=0.5)
        server.wait_ready(lambda: job(first)["status"] == "succeeded", what="a first job", timeout_s=120)

        for scenario in ("SIGKILL, restarted at once", "SIGKILL, restarted after 3 s"):
            job_id = submit()
            deadline = time.monotonic() + 60
            while job(job_id)["status"] != "running":
                assert time.monotonic() < deadline, "the job never started"
                time.sleep(0.02)
            agent.send_signal(signal.SIGKILL)
            agent.wait(10)
            killed_at = time.monotonic()
            server.processes.remove(agent)
            if "3 s" in scenario:
                time.sleep(3)
            agent = server.spawn(f"agent-{len(rows)}", agent_args)
            state = server.wait_ready(
                lambda job_id=job_id: (lambda j: j if j["status"] in ("succeeded", "failed") else None)(job(job_id)),
                what="the killed agent's job to end",
                timeout_s=120,
                interval_s=0.1,
            )
            took = time.monotonic() - killed_at
            rows.append((scenario, state["status"], took, state.get("error", {}) and str(state.get("error"))))

        print("\nfault                               job end     s after fault")
        for scenario, status, took, error in rows:
            print(f"{scenario:<35} {status:<10} {took:6.1f}  {error or ''}")
        for scenario, status, took, _error in rows:
            assert status == "succeeded", scenario  # requeued once and served by the restarted agent
            assert took < END_WITHIN_S, f"{scenario}: {took:.1f} s"
    finally:
        server.stop()


def _try(fn):
    try:
        return fn()
    except (AssertionError, httpx.HTTPError):
        return None
