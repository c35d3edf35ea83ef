"""The fault suite's fleet: uvicorn console, Celery beat and console worker, ``python -m fleetagent``.

Real processes, started through the product's own commands (``migrate``, ``seed_demo``), on
a database of their own; on a private PostgreSQL cluster (``PrivatePostgres``) and a private,
non-persistent redis-server (``PrivateRedis``) when a test restarts them, so a restart
disturbs nobody else on the machine. The agent is launched in one place: ``agent_launch``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

import httpx

from tests.support.live_server import (
    ROOT,
    LiveServer,
    _postgres_database,
    agent_launch,
    free_port,
    migrate_and_seed_demo,
    uvicorn_command,
    wait_until,
)

ENDED = ("succeeded", "failed", "cancelled")
OPEN = ("accepted", "queued", "running")
# Every job must end this soon after its fault (issue 10: within 30 s, never at its 120 s deadline).
END_WITHIN_S = 30.0


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free port, so restarting it disturbs nobody else."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="vf-faults-pg-")
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = os.path.join(self.dir, "data")
        self._pg("initdb", "-D", self.data, "-A", "trust", "-U", "postgres")
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=120)

    def ctl(self, action: str) -> None:
        """``pg_ctl start|stop|restart``, fast shutdown, returning once it is done (``-w``)."""
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self._pg("pg_ctl", "-D", self.data, "-o", options, "-m", "fast", "-w", "-l", f"{self.dir}/pg.log", action)

    def remove(self) -> None:
        try:
            self.ctl("stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis:
    """A redis-server on a free port without persistence (as in the issue): a restart loses every message."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.ping, what=f"redis-server on port {self.port}", timeout_s=30, alive=self._alive)

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1).ping())
        except redis.exceptions.ConnectionError:
            return False

    def _alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"redis-server on port {self.port} exited with {self.proc.returncode}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None


@dataclass
class Fleet:
    """The running fleet: its URL, the Pro tenant's API key, the node's token and its processes."""

    server: LiveServer
    url: str
    key: str
    token: str
    agent: subprocess.Popen | None = None
    console: subprocess.Popen | None = None
    warm_job: int | None = None  # the job fleet_start served end to end
    starts: dict = field(default_factory=dict)

    @property
    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.key}"}

    def _spawn(self, role: str, args: list[str], env: dict | None = None) -> subprocess.Popen:
        self.starts[role] = self.starts.get(role, 0) + 1
        return self.server.spawn(f"{role}-{self.starts[role]}", args, env=env)

    # --- the agent -----------------------------------------------------------------------
    def agent_start(self) -> None:
        args, env = agent_launch(self.server.env, console_url=self.url, token=self.token, workdir=self.server.workdir)
        self.agent = self._spawn("agent", args, env=env)

    def agent_kill(self) -> None:
        """SIGKILL: no ``bye``, no warm shutdown; whatever it held dies with it."""
        self._stop(self.agent, signal.SIGKILL)
        self.agent = None

    # --- the console (uvicorn) -----------------------------------------------------------
    def console_start(self, *, timeout_s: float = 90) -> None:
        port = int(self.url.rsplit(":", 1)[1])
        self.console = self._spawn("console", uvicorn_command(port, lifespan=None, log_level="info"))
        self.server.wait_ready(lambda: _try(self.server.healthz), what="the console", timeout_s=timeout_s)

    def console_stop(self, *, timeout_s: float = 60) -> None:
        """SIGTERM, as a deploy stops it: uvicorn stops listening and finishes what it serves."""
        try:
            self._stop(self.console, signal.SIGTERM, timeout_s=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the console still runs {timeout_s:g} s after SIGTERM: a request it serves never ends\n"
                + self.server.log_tail()
            ) from None
        self.console = None

    def _stop(self, proc: subprocess.Popen | None, sig: int, *, timeout_s: float = 10) -> None:
        if proc is None:
            return
        proc.send_signal(sig)
        proc.wait(timeout_s)
        self.server.processes.remove(proc)

    # --- reading the fleet's own database (the test's view of the outcome) -----------------
    def sql(self, query: str, params: tuple = (), *, rows: bool = True) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.server.env["DATABASE_URL"], connect_timeout=3, autocommit=True) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if rows else []

    def manage(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.server.env, capture_output=True, text=True
        )

    # --- the jobs API ----------------------------------------------------------------------
    def job(self, job_id: int) -> dict:
        return httpx.get(f"{self.url}/api/v1/jobs/{job_id}", headers=self.auth, timeout=10).json()

    def submit(self, text: str) -> int:
        response = httpx.post(f"{self.url}/api/v1/jobs", headers=self.auth, json={"input": text, "voice": "zh-female"})
        assert response.status_code in (200, 201, 202), response.text
        return response.json()["id"]

    def wait_end(self, job_id: int, *, timeout_s: float = 120) -> dict:
        return self.server.wait_ready(
            lambda: (lambda j: j if j["status"] in ENDED else None)(_try(lambda: self.job(job_id)) or {"status": ""}),
            what=f"job {job_id} to end",
            timeout_s=timeout_s,
            interval_s=0.1,
        )

    def stop(self) -> None:
        self.server.stop()


def fleet_start(tmp_path, *, warm_text: str, redis_url: str | None = None, database_url: str | None = None) -> Fleet:
    """Migrate and seed a fresh database, start every process, and serve one job end to end."""
    node_name = f"faults-{os.getpid()}-{tmp_path.name[-6:]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    if redis_url:
        env["REDIS_URL"] = redis_url
    base = database_url or os.environ["DATABASE_URL"]
    db = f"{base.rsplit('/', 1)[-1].split('?')[0]}_faults_{os.getpid()}_{abs(hash(tmp_path.name)) % 10_000}"
    env["DATABASE_URL"], drop = _postgres_database(base, db)
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
    try:
        demo = migrate_and_seed_demo(env)
        [node] = demo["nodes"]
        key = next(t["api_key"] for t in demo["tenants"] if t["plan"] == "Pro")
        fleet = Fleet(server=server, url=url, key=key, token=node["token"])
        # The clients call back to back, past the Pro plan's 120 requests a minute: the limit is
        # lifted in this fleet's own database (its refusals are tested in tests/billing), so a
        # row of the table measures its fault, not a rate-limit window (429 until the minute turns).
        fleet.sql("UPDATE billing_plan SET requests_per_minute = %s WHERE code = %s", (1_000_000, "pro"), rows=False)
        server.spawn("beat", [sys.executable, "-m", "celery", "-A", "console", "beat", "-l", "warning",
                              "-s", str(tmp_path / "beat-schedule")])  # fmt: skip
        # Beat's periodic tasks (fleet sweep, job recovery) run on the console's own worker.
        server.spawn("console-worker", [sys.executable, "-m", "celery", "-A", "console", "worker", "-Q", "console",
                                        "--pool", "threads", "-c", "2", "-l", "info", "-n", f"console@{node_name}"])  # fmt: skip
        fleet.agent_start()
        fleet.console_start()
        first = server.wait_ready(
            lambda: _try(lambda: fleet.submit(warm_text)), what="a first job accepted", timeout_s=90, interval_s=0.5
        )
        assert fleet.wait_end(first)["status"] == "succeeded"  # warm: served end to end by the agent
        fleet.warm_job = first
    except BaseException:
        server.stop()
        raise
    return fleet


def _try(fn):
    try:
        return fn()
    except (AssertionError, httpx.HTTPError, ValueError):
        return None
