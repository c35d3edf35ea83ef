"""A real Voxfleet server in subprocesses for end-to-end API tests and the e2e benchmark.

Robust on both databases: the server gets its own database, created here (a SQLite file, or
``<name>_e2e_<pid>`` on the PostgreSQL server of DATABASE_URL), migrated and seeded through
the real management commands and services (``e2e_setup.py``). Without REDIS_URL it is the
embedded default (one uvicorn process runs jobs in-process); with REDIS_URL it is the real
shape: uvicorn for the API plus a Celery worker consuming the node's queue.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    """Handles to a running server: its URL, the seeded logins/keys and its processes."""

    url: str
    env: dict
    data: dict
    workdir: Path
    redis: bool
    processes: list = field(default_factory=list)
    logs: list = field(default_factory=list)
    drop_database: object = None

    def key(self, name: str) -> str:
        return self.data["keys"][name]

    def stop(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.processes):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for log in self.logs:
            log.close()
        self.processes.clear()
        if self.drop_database is not None:
            self.drop_database()
            self.drop_database = None

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for path in sorted(self.workdir.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"== {path.name}\n" + "\n".join(text))
        return "\n".join(out)


def _postgres_database(base_url: str, name: str):
    """Create a fresh database next to DATABASE_URL's; return (url, drop)."""
    import psycopg

    parts = urlsplit(base_url)
    admin = urlunsplit(parts._replace(path="/postgres", query=""))

    def run(sql: str) -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql)

    run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    run(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}")), lambda: run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _clear_rate_limits(redis_url: str) -> None:
    # Tenant ids restart at 1 in the fresh database; old per-tenant counters must not apply.
    import redis

    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter("vf:billing:*"):
        client.delete(key)


def live_server_start(workdir: Path, *, worker_concurrency: int = 1, log_level: str = "WARNING") -> LiveServer:
    workdir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        {
            "OUTPUTS_DIR": str(workdir / "outputs"),
            "VOXFLEET_VAR_DIR": str(workdir / "var"),
            "VOXFLEET_EMBEDDED_NODE": f"e2e-{os.getpid()}",
            "LOG_LEVEL": log_level,
            "DJANGO_SETTINGS_MODULE": "console.settings",
            "PYTHONPATH": str(ROOT),
        }
    )
    base = os.environ.get("DATABASE_URL", "")
    drop = None
    if base.startswith(("postgres://", "postgresql://", "pgsql://")):
        db_name = f"{urlsplit(base).path.lstrip('/')}_e2e_{os.getpid()}"
        env["DATABASE_URL"], drop = _postgres_database(base, db_name)
    else:
        env["DATABASE_URL"] = f"sqlite:///{workdir / 'e2e.sqlite3'}"
    redis_url = os.environ.get("REDIS_URL") or ""
    if redis_url:
        _clear_rate_limits(redis_url)
    python = sys.executable
    server = LiveServer(url="", env=env, data={}, workdir=workdir, redis=bool(redis_url), drop_database=drop)
    try:
        subprocess.run([python, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
        setup = subprocess.run(
            [python, str(ROOT / "tests" / "support" / "e2e_setup.py")],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        server.data = json.loads(setup.stdout.strip().splitlines()[-1])
        port = free_port()
        server.url = f"http://127.0.0.1:{port}"

        def spawn(name: str, args: list[str]) -> None:
            log = open(workdir / f"{name}.log", "w")  # noqa: SIM115 - closed in stop()
            server.logs.append(log)
            server.processes.append(subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))

        spawn(
            "uvicorn",
            [
                python,
                "-m",
                "uvicorn",
                "console.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--lifespan",
                "on",
                "--no-access-log",
                "--log-level",
                "warning",
            ],
        )
        if redis_url:
            spawn(
                "worker",
                [
                    python,
                    "-m",
                    "celery",
                    "-A",
                    "console",
                    "worker",
                    "-Q",
                    ",".join(f"node.{name}" for name in server.data["nodes"]),
                    "-P",
                    "threads",
                    "-c",
                    str(worker_concurrency),
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "-l",
                    "WARNING",
                    "-n",
                    f"{server.data['node']}@%h",
                ],
            )
        _wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(server: LiveServer, timeout_s: float = 120.0) -> None:
    """Up when /healthz answers and one real synthesis succeeds (engine loaded, worker consuming)."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        for proc in server.processes:
            if proc.poll() is not None:
                raise RuntimeError(f"server process exited ({proc.args[:4]}):\n{server.log_tail()}")
        try:
            response = httpx.post(
                f"{server.url}/v1/audio/speech",
                headers={"Authorization": f"Bearer {server.key('warmup')}"},
                json={"model": "cosyvoice-3", "input": "你好", "voice": "zh-female", "seed": 1},
                timeout=30,
            )
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise RuntimeError(f"server not ready: {last}\n{server.log_tail()}")
