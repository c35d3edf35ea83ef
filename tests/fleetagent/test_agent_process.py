"""A separately started GPU host with no database serves jobs end to end (issue 10).

The console (uvicorn) runs on PostgreSQL and Redis; the host is ``python -m fleetagent`` with
only the console's URL, its node token and the broker's address: no DATABASE_URL or any other
database, Redis-cache or Django variable in its environment, its own empty working and cache
folders, no shared OUTPUTS_DIR, and Django itself made unimportable (``tests.support.no_django``).
It serves a preset voice and a cloned one (its prompt audio fetched from the console with the
node token), the console writes the WAVs, and the host's job outcomes reach /metrics. A wrong
token ends the host at once with exit status 2. No doubles anywhere.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from fleetagent import protocol
from tests.inference.speech_samples import encode, speech
from tests.support.live_server import (
    ROOT,
    LiveServer,
    _postgres_database,
    free_port,
    migrate_and_seed_demo,
    uvicorn_command,
)

pytestmark = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres") or not os.environ.get("REDIS_URL"),
    reason="the separate agent process needs a shared PostgreSQL database and Redis (the broker)",
)

# What a host must not be handed: the console's database, cache, files and settings.
CONSOLE_ONLY = ("DATABASE", "PG", "REDIS", "BROKER", "DJANGO", "OUTPUTS", "VOXFLEET_VAR", "SECRET", "CELERY")


def host_env(home) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", *CONSOLE_ONLY))}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "HOME": str(home),
            "VOXFLEET_HOST_CACHE": str(home / "cache"),
            "LOG_LEVEL": "INFO",
        }
    )
    return env


def host_command(url: str, token: str, broker: str) -> list[str]:
    # python -m fleetagent, with Django unimportable (tests.support.no_django runs its __main__).
    return [sys.executable, "-m", "tests.support.no_django", "fleetagent", "--console", url, "--token", token,
            "--broker", broker, "--engine", "cpu"]  # fmt: skip


def spawn_host(server: LiveServer, name: str, args: list[str], *, home) -> subprocess.Popen:
    """The host process in its own working folder, on its own environment; stopped with the server."""
    home.mkdir(parents=True, exist_ok=True)
    log = open(server.workdir / f"{name}.log", "w")  # noqa: SIM115 - closed by server.stop()
    server.logs.append(log)
    proc = subprocess.Popen(args, cwd=home, env=host_env(home), stdout=log, stderr=subprocess.STDOUT)
    server.processes.append(proc)
    return proc


def staff_http(url: str) -> httpx.Client:
    """A browser-like session of seed_demo's admin (Django's login form, CSRF cookie)."""
    http = httpx.Client(base_url=url, timeout=30)
    page = http.get("/admin/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    login = {"username": "admin", "password": "voxfleet-admin", "csrfmiddlewaretoken": token, "next": "/ops/"}
    assert http.post("/admin/login/?next=/ops/", data=login).status_code == 302
    return http


def ops_action(server: LiveServer, http: httpx.Client, node: str, action: str) -> dict:
    """Ask for an ops action from the API the dashboard uses; the record once the host acked it."""
    asked = http.post(f"/ops/api/nodes/{node}/actions/", json={"action": action},
                      headers={"X-CSRFToken": http.cookies["csrftoken"]})  # fmt: skip
    assert asked.status_code == 202, asked.text

    def acked():
        record = http.get(f"/ops/api/actions/{asked.json()['id']}/").json()
        return record if record["outcome"] != "pending" else None

    return server.wait_ready(acked, what=f"the host's ack of {action}", timeout_s=60, interval_s=0.3)


def test_a_host_with_no_database_serves_preset_and_cloned_voices_end_to_end(tmp_path):
    node_name = f"agent-{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    base = os.environ["DATABASE_URL"]
    env["DATABASE_URL"], drop = _postgres_database(base, f"{base.rsplit('/', 1)[-1].split('?')[0]}_agent_{os.getpid()}")
    outputs = tmp_path / "console" / "outputs"
    env.update(
        {
            "VOXFLEET_EMBEDDED_NODE": node_name,  # seed_demo registers this node and prints its token
            "VOXFLEET_VAR_DIR": str(tmp_path / "console" / "var"),
            "OUTPUTS_DIR": str(outputs),
            "METRICS_TOKEN": "metrics-test-token",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
        }
    )
    url = f"http://127.0.0.1:{free_port()}"
    server = LiveServer(url=url, env=env, data={}, workdir=tmp_path, redis=True, drop_database=drop)
    host_home = tmp_path / "host"
    try:
        demo = migrate_and_seed_demo(env)
        [node] = demo["nodes"]
        pro_key = next(t["api_key"] for t in demo["tenants"] if t["plan"] == "Pro")
        auth = {"Authorization": f"Bearer {pro_key}"}
        port = int(url.rsplit(":", 1)[1])
        server.spawn("console", uvicorn_command(port, lifespan=None, log_level="info"))
        server.wait_ready(server.healthz, what="the console", timeout_s=90, interval_s=0.3)

        # A wrong token: found by connecting (HTTP 403 on the websocket), exit status 2 at once.
        wrong = subprocess.run(
            host_command(url, "vfn_wrong-token", os.environ["REDIS_URL"]),
            cwd=tmp_path,
            env=host_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert wrong.returncode == 2 and "refused this node's token" in wrong.stderr and "403" in wrong.stderr

        spawn_host(server, "agent", host_command(url, node["token"], os.environ["REDIS_URL"]), home=host_home)

        def _wait(predicate, what: str):
            return server.wait_ready(predicate, what=what, timeout_s=90.0, interval_s=0.5)

        def metrics() -> str:
            response = httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer metrics-test-token"}, timeout=10)
            return response.text if response.status_code == 200 else ""

        # The host registers, heartbeats in CPU mode (no NVML here) and the node goes online.
        _wait(lambda: f'voxfleet_node_state{{node="{node_name}",state="online"}} 1' in metrics(), "the node online")
        _wait(lambda: f'voxfleet_node_cpu_percent{{node="{node_name}"}}' in metrics(), "CPU samples")

        def speak(voice: str, seed: int):
            response = httpx.post(
                f"{url}/v1/audio/speech",
                headers=auth,
                json={
                    "model": "cosyvoice-3",
                    "input": "你好，欢迎使用语音合成。",
                    "voice": voice,
                    "seed": seed,
                    "response_format": "wav",
                },  # fmt: skip
                timeout=60,
            )
            return response if response.status_code == 200 else None

        def job_of(response) -> dict:
            return httpx.get(f"{url}/api/v1/jobs/{response.headers['X-Job-Id']}", headers=auth, timeout=10).json()

        # A preset voice: the job message goes through the node's queue to the host and the
        # audio comes back over its websocket.
        preset = _wait(lambda: speak("zh-female", 7), "a synthesis served by the host")
        assert preset.content[:4] == b"RIFF" and len(preset.content) > 20_000
        job = job_of(preset)
        assert job["status"] == "succeeded" and job["node"] == node_name

        # A cloned voice: the host fetches its prompt audio from the console with its token.
        prompt = speech(6.0, "zh-female")
        audio = encode(prompt.samples, prompt.sample_rate)
        created = httpx.post(
            f"{url}/api/v1/voices",
            headers=auth,
            data={"name": "Narrator", "transcript": "今天天气很好"},
            files={"audio": ("prompt.wav", audio, "audio/wav")},
            timeout=60,
        )
        assert created.status_code == 201, created.text
        cloned = speak(created.json()["id"], 8)
        assert cloned is not None and cloned.content[:4] == b"RIFF"
        assert job_of(cloned)["status"] == "succeeded"

        # The console wrote both WAVs into its own OUTPUTS_DIR; the host holds only its prompt cache.
        written = sorted(p.name for p in outputs.glob("*.wav"))
        assert [name.rsplit("-", 1)[-1] for name in written] == sorted(
            f"{r.headers['X-Job-Id']}.wav" for r in (preset, cloned)
        )
        cached = [p for p in (host_home / "cache" / "prompts").iterdir()]
        assert len(cached) == 1 and cached[0].read_bytes() == audio
        assert not list(host_home.rglob("*.wav.pcm.part")) and not (host_home / "outputs").exists()

        # The host's own job outcomes feed its stats, which the console exports.
        _wait(
            lambda: f'voxfleet_jobs_total{{node="{node_name}",outcome="succeeded"}} 2.0' in metrics(),
            "the node's succeeded-jobs counter in /metrics",
        )

        # Ops on a host with no database: drain stops its worker consuming the node's queue in
        # process, resume starts it again (a job is served after it), restart reloads the engine.
        http = staff_http(url)
        drained = ops_action(server, http, node_name, "drain")
        assert drained["outcome"] == "succeeded" and drained["detail"] == {"jobs_running": 0, "jobs_queued": 0}
        _wait(
            lambda: f"Canceling queue node.{node_name}" in (tmp_path / "agent.log").read_text(), "the queue cancelled"
        )
        assert ops_action(server, http, node_name, "resume")["outcome"] == "succeeded"
        restarted = ops_action(server, http, node_name, "restart")
        assert restarted["outcome"] == "succeeded" and restarted["detail"]["engine_reloaded"] is True
        assert restarted["detail"]["jobs"] == {} and restarted["detail"]["jobs_finished"] == 0
        after = _wait(lambda: speak("zh-female", 9), "a synthesis after drain, resume and restart")
        assert job_of(after)["status"] == "succeeded"
    finally:
        server.stop()  # and drops its database


def test_the_benchmarks_host_path_is_a_v3_host_per_node_with_no_database(tmp_path):
    """``live_server_start(worker="host")`` (bench/synthesis_e2e.py --path host): every node is
    served by its own ``python -m fleetagent`` speaking v3, whose environment holds no database."""
    import psycopg

    from tests.support.live_server import live_server_start

    server = live_server_start(tmp_path, worker="host")  # ready once one synthesis succeeded
    try:
        hosts = [proc for proc in server.processes if proc.args[1:3] == ["-m", "fleetagent"]]
        assert len(hosts) == len(server.data["nodes"]) == 2
        for proc in hosts:
            environ = (Path("/proc") / str(proc.pid) / "environ").read_bytes().split(b"\0")
            names = {entry.split(b"=", 1)[0].decode() for entry in environ if entry}
            assert not names & {"DATABASE_URL", "OUTPUTS_DIR", "VOXFLEET_VAR_DIR"} and not any(
                name.startswith("PG") for name in names
            ), names
        key = server.key("enterprise")
        response = httpx.post(
            f"{server.url}/v1/audio/speech",
            headers={"Authorization": f"Bearer {key}"},
            json={
                "model": "cosyvoice-3",
                "input": "我们明天见。",
                "voice": "zh-female",
                "seed": 7,
                "response_format": "wav",
            },
            timeout=60,
        )
        assert response.status_code == 200 and response.content[:4] == b"RIFF"
        with psycopg.connect(server.env["DATABASE_URL"], autocommit=True) as conn:
            served = conn.execute(
                "SELECT n.name, n.protocol_version FROM inference_synthesisjob j JOIN fleetagent_node n "
                "ON n.id = j.node_id WHERE j.id = %s",
                (int(response.headers["X-Job-Id"]),),
            ).fetchone()
        assert served == (f"{server.data['node']}-dedicated", protocol.JOB_FRAMES_FROM)
    finally:
        server.stop()


def test_live_server_start_names_the_workers_it_knows(tmp_path):
    from tests.support.live_server import live_server_start

    with pytest.raises(ValueError, match="worker must be one of"):
        live_server_start(tmp_path, worker="gpu")
