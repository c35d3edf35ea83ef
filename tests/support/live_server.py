"""The one place tests and benchmarks start a real Voxfleet server.

Three shapes, sharing port picking, process handling and readiness waits (a condition polled
against a deadline, never a fixed sleep):

- ``ThreadedLiveServer``: uvicorn inside this process, in a thread, on the test database
  (websocket tests that drive the real agent client over real sockets).
- ``live_server_start``: the end-to-end API server in subprocesses with its own database,
  created here (a SQLite file, or ``<name>_e2e_<pid>_<n>`` on the PostgreSQL server of
  DATABASE_URL), migrated and seeded through the real management commands and services
  (``e2e_setup.py``). Without REDIS_URL it is the embedded default (one uvicorn process runs
  jobs in-process); with REDIS_URL it is the real shape: uvicorn for the API plus a Celery
  worker consuming the node's queue (``worker="celery"``, the legacy database-backed worker), or
  a v3 GPU host per node (``worker="host"``: ``python -m fleetagent`` started by ``agent_launch``
  with no database variables in its environment). Ready once one real synthesis succeeds.
- ``embedded_server_start``: the README's embedded default (SQLite file, no Redis, demo data
  from ``seed_demo``) in one uvicorn process, whatever the suite's own database (browser tests).

``console_server_start`` is the bare piece under the last two: one uvicorn process on an
environment the caller prepared, ready when /healthz answers (the fleet benchmark).
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from tests.support.limits import RATE_LIMIT_KEYS, redis_keys_delete

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(
    condition: Callable[[], Any],
    *,
    what: str,
    timeout_s: float,
    interval_s: float = 0.05,
    alive: Callable[[], None] | None = None,
    details: Callable[[], str] | None = None,
) -> Any:
    """Poll ``condition`` until it returns something truthy and return that, or raise.

    ``alive`` is called before each poll and raises if what we wait for can no longer happen
    (a server process that exited); an ``OSError``/``httpx.HTTPError`` from ``condition``
    counts as "not yet". ``details`` adds context (log tails) to the timeout message.
    """
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        if alive is not None:
            alive()
        try:
            last = condition()
            if last:
                return last
        except (OSError, httpx.HTTPError) as exc:
            last = exc
        if time.monotonic() >= deadline:
            extra = f"\n{details()}" if details is not None else ""
            raise RuntimeError(f"timed out after {timeout_s:g} s waiting for {what} (last: {last!r}){extra}")
        time.sleep(interval_s)


def uvicorn_command(
    port: int,
    *,
    lifespan: str | None = "on",
    ws: str | None = None,
    access_log: bool = True,
    log_level: str = "warning",
    extra_args: tuple[str, ...] | list[str] = (),
    launcher: tuple[str, ...] | list[str] = (),
) -> list[str]:
    """``python -m uvicorn console.asgi:application`` on 127.0.0.1:``port``; ``extra_args`` go last,
    ``launcher`` between python and ``-m`` (a script that runs the module, e.g. bench/profiled.py)."""
    args = [PYTHON, *launcher, "-m", "uvicorn", "console.asgi:application", "--host", "127.0.0.1", "--port", str(port)]
    if lifespan is not None:
        args += ["--lifespan", lifespan]
    if ws is not None:
        args += ["--ws", ws]
    if not access_log:
        args.append("--no-access-log")
    return args + ["--log-level", log_level, *extra_args]


@dataclass
class LiveServer:
    """Handles to a running server in subprocesses: its URL, the seeded data and its processes."""

    url: str
    env: dict
    data: dict
    workdir: Path | None
    redis: bool
    processes: list = field(default_factory=list)
    logs: list = field(default_factory=list)
    drop_database: object = None

    def key(self, name: str) -> str:
        return self.data["keys"][name]

    def spawn(self, name: str, args: list[str], env: dict | None = None) -> subprocess.Popen:
        """Start one process (on ``env``, default the server's); its output goes to
        ``<workdir>/<name>.log`` (or ours without a workdir)."""
        out = None
        if self.workdir is not None:
            out = open(self.workdir / f"{name}.log", "w")  # noqa: SIM115 - closed in stop()
            self.logs.append(out)
        proc = subprocess.Popen(
            args, cwd=ROOT, env=self.env if env is None else env, stdout=out, stderr=subprocess.STDOUT if out else None
        )
        self.processes.append(proc)
        return proc

    def check_alive(self) -> None:
        for proc in self.processes:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"server process exited with {proc.returncode} ({proc.args[:4]}):\n{self.log_tail()}"
                )

    def wait_ready(self, condition: Callable[[], Any], *, what: str, timeout_s: float, interval_s: float = 0.2):
        return wait_until(
            condition,
            what=what,
            timeout_s=timeout_s,
            interval_s=interval_s,
            alive=self.check_alive,
            details=self.log_tail,
        )

    def healthz(self) -> bool:
        return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200

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
        self.logs.clear()
        if self.drop_database is not None:
            self.drop_database()
            self.drop_database = None

    def log_tail(self, lines: int = 40) -> str:
        if self.workdir is None:
            return ""
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


def console_server_start(
    *,
    env: dict,
    workdir: Path | None = None,
    port: int | None = None,
    lifespan: str | None = "on",
    ws: str | None = None,
    access_log: bool = True,
    timeout_s: float = 90.0,
    extra_args: tuple[str, ...] | list[str] = (),
    launcher: tuple[str, ...] | list[str] = (),
) -> LiveServer:
    """One uvicorn process serving the console on ``env``; returns once /healthz answers 200."""
    port = port or free_port()
    server = LiveServer(
        url=f"http://127.0.0.1:{port}", env=env, data={}, workdir=workdir, redis=bool(env.get("REDIS_URL"))
    )
    try:
        server.spawn(
            "server",
            uvicorn_command(
                port, lifespan=lifespan, ws=ws, access_log=access_log, extra_args=extra_args, launcher=launcher
            ),
        )
        server.wait_ready(server.healthz, what=f"/healthz on {server.url}", timeout_s=timeout_s)
    except BaseException:
        server.stop()
        raise
    return server


def embedded_server_start(workdir: Path, *, extra_env: dict | None = None) -> LiveServer:
    """The embedded default on its own SQLite file, seeded with ``seed_demo`` (``data`` is its JSON)."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "VOXFLEET_PRODUCTION")}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "console.settings",
            "DATABASE_URL": f"sqlite:///{workdir / 'embedded.sqlite3'}",
            "VOXFLEET_VAR_DIR": str(workdir / "var"),
            "OUTPUTS_DIR": str(workdir / "outputs"),
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
    )
    demo = migrate_and_seed_demo(env)
    server = console_server_start(env=env, workdir=workdir)
    server.data = demo
    return server


# What only the console has: its database and its disk (a GPU host shares neither).
CONSOLE_ONLY_VARS = ("DATABASE_URL", "OUTPUTS_DIR", "VOXFLEET_VAR_DIR", "VOXFLEET_EMBEDDED_NODE")


def agent_launch(console_env: dict, *, console_url: str, token: str, workdir) -> tuple[list[str], dict]:
    """A v3 GPU host's command line and environment (the fault suite and the benchmark start it
    so): only what a GPU host holds — the console URL, its node token and the broker (Redis,
    single-trust, used as given); no database variables, no shared disk."""
    args = [sys.executable, "-m", "fleetagent", "--console", console_url, "--token", token]
    env = {k: v for k, v in console_env.items() if k not in CONSOLE_ONLY_VARS and not k.startswith("PG")}
    env["VOXFLEET_HOST_CACHE"] = str(workdir / "host")  # its own cache, no shared disk
    return [*args, "--broker", console_env["REDIS_URL"]], env


def migrate_and_seed_demo(env: dict) -> dict:
    """Migrate the database ``env`` names and seed the demo; ``seed_demo --json``'s answer
    (tenants with their API keys, nodes with their tokens)."""
    subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True, timeout=240)
    seeded = subprocess.run(
        [PYTHON, "manage.py", "seed_demo", "--json"], cwd=ROOT, env=env, check=True, timeout=120, capture_output=True
    )
    return json.loads(seeded.stdout)


WORKERS = ("celery", "host")
_E2E_SERIAL = itertools.count(1)


def live_server_start(
    workdir: Path, *, worker_concurrency: int = 1, log_level: str = "WARNING", worker: str = "celery"
) -> LiveServer:
    if worker not in WORKERS:
        raise ValueError(f"worker must be one of {WORKERS}, not {worker!r}")
    # One name per server, not per process: the session's live server and a test's own (the
    # host-path test) run side by side on one Redis, and each drops its database when it stops.
    serial = next(_E2E_SERIAL)
    workdir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        {
            "OUTPUTS_DIR": str(workdir / "outputs"),
            "VOXFLEET_VAR_DIR": str(workdir / "var"),
            "VOXFLEET_EMBEDDED_NODE": f"e2e-{os.getpid()}-{serial}",
            "LOG_LEVEL": log_level,
            "DJANGO_SETTINGS_MODULE": "console.settings",
            "PYTHONPATH": str(ROOT),
        }
    )
    base = os.environ.get("DATABASE_URL", "")
    drop = None
    if base.startswith(("postgres://", "postgresql://", "pgsql://")):
        db_name = f"{urlsplit(base).path.lstrip('/')}_e2e_{os.getpid()}_{serial}"
        env["DATABASE_URL"], drop = _postgres_database(base, db_name)
    else:
        env["DATABASE_URL"] = f"sqlite:///{workdir / 'e2e.sqlite3'}"
    redis_url = os.environ.get("REDIS_URL") or ""
    if redis_url:
        # Tenant ids restart at 1 in the fresh database; old per-tenant counters must not apply.
        redis_keys_delete(redis_url, RATE_LIMIT_KEYS)
    server = LiveServer(url="", env=env, data={}, workdir=workdir, redis=bool(redis_url), drop_database=drop)
    try:
        subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
        setup = subprocess.run(
            [PYTHON, str(ROOT / "tests" / "support" / "e2e_setup.py"), *(["--hosts"] if worker == "host" else [])],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        server.data = json.loads(setup.stdout.strip().splitlines()[-1])
        port = free_port()
        server.url = f"http://127.0.0.1:{port}"
        server.spawn("uvicorn", uvicorn_command(port, access_log=False))
        if redis_url and worker == "host":
            server.wait_ready(server.healthz, what=f"/healthz on {server.url}", timeout_s=90)
            for name in server.data["nodes"]:
                args, host_env = agent_launch(
                    env, console_url=server.url, token=server.data["tokens"][name], workdir=workdir / name
                )
                server.spawn(f"host-{name}", [*args, "--concurrency", str(worker_concurrency)], env=host_env)
        elif redis_url:
            server.spawn(
                "worker",
                [
                    PYTHON,
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
        last_answer = [""]

        def synthesis_ok() -> bool:
            response = httpx.post(
                f"{server.url}/v1/audio/speech",
                headers={"Authorization": f"Bearer {server.key('warmup')}"},
                json={"model": "cosyvoice-3", "input": "你好", "voice": "zh-female", "seed": 1},
                timeout=30,
            )
            last_answer[0] = f"{response.status_code} {response.text[:200]}"
            return response.status_code == 200

        wait_until(
            synthesis_ok,
            what="one real synthesis (engine loaded, worker consuming)",
            timeout_s=120,
            interval_s=0.5,
            alive=server.check_alive,
            details=lambda: f"last answer: {last_answer[0]}\n{server.log_tail()}",
        )
    except BaseException:
        server.stop()
        raise
    return server


class ThreadedLiveServer:
    """uvicorn serving the console inside this process (same database connection settings as the tests)."""

    def __init__(self, port: int | None = None, *, lifespan: str = "off", ws: str = "websockets-sansio") -> None:
        import uvicorn

        from console.asgi import application

        self.port = port or free_port()
        started = threading.Event()

        class _Server(uvicorn.Server):
            async def startup(self, sockets=None) -> None:
                await super().startup(sockets=sockets)
                if not self.should_exit:  # startup failed (port taken, lifespan error) otherwise
                    started.set()

        config = uvicorn.Config(
            application, host="127.0.0.1", port=self.port, lifespan=lifespan, ws=ws, log_level="warning"
        )
        self.server = _Server(config)
        self.started = started
        self.thread = threading.Thread(target=self.server.run, daemon=True, name=f"uvicorn:{self.port}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _check_alive(self) -> None:
        if not self.thread.is_alive():
            raise RuntimeError(f"uvicorn on port {self.port} stopped before it was serving")

    def start(self, timeout_s: float = 10.0) -> ThreadedLiveServer:
        self.thread.start()
        wait_until(
            lambda: self.started.wait(0.05),
            what=f"uvicorn on port {self.port}",
            timeout_s=timeout_s,
            interval_s=0,
            alive=self._check_alive,
        )
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
