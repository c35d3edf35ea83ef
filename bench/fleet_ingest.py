"""Fleet ingest benchmark: N simulated agents at 1 Hz into a live console, M dashboards watching.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/vf_fleet REDIS_URL=redis://127.0.0.1:6379/3 \
        .venv/bin/python bench/fleet_ingest.py --hosts 125 --gpus 8 --dashboards 20 --duration 30

Starts ``uvicorn console.asgi:application`` on a loopback port (a subprocess, so its CPU can
be measured on its own; started by ``tests.support.live_server.console_server_start``, ready
when /healthz answers), registers the nodes and a staff user through the real services, then
runs real websocket clients speaking the agent protocol (hello, then one sample with
every GPU per second, ``ts`` = send time) and dashboard clients with a staff session.
Prints sustained samples/s (sent, delivered to dashboards, persisted), agent -> dashboard
latency p50/p95/max (from the sample's ``ts`` to its arrival at each dashboard), and the
server's and this client's CPU, and the console's CPU seconds per 1,000 agent frames (the
figure that does not depend on what else the machine runs). ``--save F.json`` keeps the
headline figures, ``--baseline F.json`` prints a later run next to them (before/after a
change); ``--profile F.prof`` runs the console under cProfile in every thread.
Everything is bounded in time and runs on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/vf_fleet")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/3")

from tests.support.live_server import console_server_start  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hosts", type=int, default=125)
    p.add_argument("--gpus", type=int, default=8, help="GPUs per host")
    p.add_argument("--dashboards", type=int, default=20)
    p.add_argument("--dashboard-procs", type=int, default=4, help="processes the dashboard clients run in")
    p.add_argument("--duration", type=float, default=30.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="console processes (uvicorn --workers)")
    p.add_argument("--save", metavar="FILE.json", help="write the headline figures here (a later --baseline)")
    p.add_argument("--baseline", metavar="FILE.json", help="print the figures next to a run saved with --save")
    p.add_argument(
        "--profile", metavar="OUT.prof", help="run the console under cProfile, every thread (bench/profiled.py)"
    )
    # Internal: the dashboards run in a child process so their JSON parsing does not delay
    # the simulated agents' loop (and the other way round).
    p.add_argument("--role", choices=["main", "dashboards", "agents"], default="main", help=argparse.SUPPRESS)
    p.add_argument("--nodes-file", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--cookie", help=argparse.SUPPRESS)
    return p.parse_args()


def setup_fleet(hosts: int) -> tuple[list[tuple[str, str]], str]:
    """Migrate, (re)create bench nodes and a staff session through the real services."""
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.test import Client

    from billing.services import user_create
    from fleetagent.models import GpuSample, Node, NodeAction
    from fleetagent.services import node_create

    call_command("migrate", verbosity=0, interactive=False)
    bench_nodes = Node.objects.filter(name__startswith="bench-")
    GpuSample.objects.filter(node__in=bench_nodes).delete()
    NodeAction.objects.filter(node__in=bench_nodes).delete()
    bench_nodes.delete()
    nodes = [node_create(name=f"bench-{i:04d}", gpu_model="A10") for i in range(hosts)]
    from django.contrib.auth import get_user_model

    get_user_model().objects.filter(username="bench-ops").delete()
    staff = user_create(username="bench-ops", password="pw-bench-123", email="bench@example.com", is_staff=True)
    client = Client()
    client.force_login(staff)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    return [(node.name, token) for node, token in nodes], cookie


def persisted_count(start: float, end: float) -> int:
    """1 s rows stored for readings taken (agent ts) inside the measured window."""
    from datetime import UTC, datetime

    from fleetagent.models import GpuSample

    return GpuSample.objects.filter(
        node__name__startswith="bench-",
        resolution_s=1,
        at__gte=datetime.fromtimestamp(start, tz=UTC),
        at__lt=datetime.fromtimestamp(end, tz=UTC),
    ).count()


def rollup_check(end: float) -> dict:
    """Roll the run's 1 s rows up as the hourly task will (as if an hour had passed): all of them."""
    from datetime import UTC, datetime, timedelta

    from fleetagent.services import samples_downsample

    started = time.perf_counter()
    result = samples_downsample(now=datetime.fromtimestamp(end, tz=UTC) + timedelta(hours=1, minutes=2))
    return {**result, "s": time.perf_counter() - started}


async def agents_main(args) -> int:
    """Child role: the simulated agents only (the browser benchmark keeps them off its own loop)."""
    from fleetagent import protocol

    client_gc_tune()
    nodes = json.loads(Path(args.nodes_file).read_text())
    res = Results()
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(args.duration, stop.set)
    await asyncio.gather(*(run_agent(args.url, n, t, args.gpus, stop, res, protocol) for n, t in nodes))
    return 0


def gpu_reading(index: int) -> dict:
    return {
        "index": index,
        "utilization": float(random.randint(0, 100)),
        "memory_utilization": float(random.randint(0, 60)),
        "vram_used_mb": float(random.randint(1000, 22000)),
        "vram_total_mb": 23028.0,
        "temperature_c": float(random.randint(40, 80)),
        "power_w": float(random.randint(60, 150)),
        "power_limit_w": 150.0,
        "sm_clock_mhz": 1695.0,
        "throttle_reasons": 0,
        "ecc_errors": 0,
        "xid_errors": 0,
        "processes": [{"pid": 1000 + index, "vram_used_mb": 6000.0}],
    }


class Jobs:
    """A busy host's job figures: jobs start and finish, so the cumulative counts (stored with the
    node, for /metrics) change most seconds and the running count now and then, as on a real fleet."""

    def __init__(self) -> None:
        self.running = random.randint(0, 4)
        self.succeeded = random.randint(0, 1000)

    def tick(self) -> dict:
        if random.random() < 0.2:
            self.running = max(0, min(8, self.running + random.choice((-1, 1))))
        self.succeeded += random.random() < 0.7
        return {
            "jobs_running": self.running,
            "jobs_queued": 0,
            "success_rate_5m": 1.0,
            "draining": False,
            "jobs_total": {"succeeded": self.succeeded},
        }


class Results:
    def __init__(self) -> None:
        self.sent_samples = 0  # GPU readings
        self.sent_messages = 0
        self.received_gpu_readings = 0
        self.dashboard_messages = 0
        self.latencies: list[float] = []
        self.server_latencies: list[float] = []  # agent ts -> the console encoding the batch (sent_at)
        self.deliveries: list[float] = []  # per batch: encoded (sent_at) -> at a dashboard
        self.measuring = False
        self.agent_errors = 0
        self.dashboard_errors = 0
        self.welcomed: dict[str, float] = {}  # agent -> when its welcome came (monotonic)


async def run_agent(url: str, name: str, token: str, gpus: int, stop: asyncio.Event, res: Results, protocol) -> None:
    """One simulated host: like the real agent, it reconnects with capped, jittered backoff."""
    from fleetagent.agent.client import BACKOFF_INITIAL_S, BACKOFF_MAX_S, backoff_delay

    # Hosts coming up (or back after a console restart) spread over a few seconds, as the
    # real agents' jittered backoff spreads them.
    await asyncio.sleep(3 * random.random())
    backoff = BACKOFF_INITIAL_S
    while not stop.is_set():
        try:
            await _agent_session(url, name, token, gpus, stop, res, protocol)
            return
        except Exception as exc:  # noqa: BLE001 - counted and reported, then retried
            res.agent_errors += 1
            print(f"agent {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        await asyncio.sleep(backoff_delay(backoff))
        backoff = min(backoff * 2, BACKOFF_MAX_S)


async def _agent_session(url, name, token, gpus, stop, res, protocol) -> None:
    import websockets

    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}, max_queue=None) as ws:
        await ws.send(
            protocol.message_encode(
                protocol.HELLO,
                node=name,
                hostname=name,
                agent_version="bench",
                engine="bench",
                nvml=True,
                gpu_model="NVIDIA A10",
                gpus=[{"index": i} for i in range(gpus)],
            )
        )
        await ws.recv()
        res.welcomed[name] = time.monotonic()  # the latest welcome: a reconnect counts again
        seq = 0
        next_at = time.monotonic()
        drain = asyncio.create_task(_drain(ws))
        jobs = Jobs()
        while not stop.is_set():
            seq += 1
            text = protocol.message_encode(
                protocol.SAMPLE,
                seq=seq,
                ts=time.time(),
                gpus=[gpu_reading(i) for i in range(gpus)],
                host={"cpu_percent": 10.0, "ram_used_mb": 9000.0, "ram_total_mb": 64000.0},
                node=jobs.tick(),
            )
            await ws.send(text)
            if res.measuring:
                res.sent_samples += gpus
                res.sent_messages += 1
            next_at += 1.0
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        drain.cancel()


async def _drain(ws) -> None:
    async for _ in ws:
        pass


async def run_dashboard(url: str, cookie: str, window: list[float], res: Results) -> None:
    """One dashboard until the end of ``window`` ([start, end], set by the main process once
    the fleet is connected; infinite until then)."""
    import websockets

    while time.time() < window[1]:  # a browser reconnects too (a handshake can time out while 625 agents connect)
        try:
            await _dashboard_session(url, cookie, window, res)
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:
            res.dashboard_errors += 1
            print(f"dashboard: {type(exc).__name__}: {exc}", file=sys.stderr)
            await asyncio.sleep(0.5)


async def _dashboard_session(url: str, cookie: str, window: list[float], res: Results) -> None:
    import websockets

    from console.consumers.wire import DashboardCopy

    copy = DashboardCopy()
    origin = "http://" + url.split("/")[2]  # our own page's origin (dashboards check it)
    async with websockets.connect(
        url, additional_headers={"Cookie": cookie}, origin=origin, max_size=None, max_queue=None
    ) as ws:
        while time.time() < window[1]:
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=0.5)
            except TimeoutError:
                continue
            now = time.time()
            msg = json.loads(raw)
            gaps = copy.gaps
            entries = copy.apply(msg)  # batches are deltas: the readings are the copy's
            if copy.gaps > gaps:
                await ws.send(copy.RESYNC)
            if msg.get("type") != "nodes" or not entries or not window[0] <= now < window[1]:
                continue
            res.dashboard_messages += 1
            res.deliveries.append(now - msg["sent_at"])
            for node in entries:
                if node.get("ts"):
                    res.received_gpu_readings += len(copy.nodes[node["id"]].get("gpus") or ())
                    res.latencies.append(now - node["ts"])
                    res.server_latencies.append(msg["sent_at"] - node["ts"])


async def dashboards_main(args) -> int:
    """Child role: ``--dashboards`` dashboard clients; prints what they saw as one JSON line."""
    client_gc_tune()
    res = Results()
    window = [math.inf, math.inf]

    async def window_read() -> None:
        # One line on stdin, "START END", once the fleet is connected and warm.
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        window[:] = [float(x) for x in line.split()]

    reader = asyncio.create_task(window_read())
    await asyncio.gather(*(run_dashboard(args.url, args.cookie, window, res) for _ in range(args.dashboards)))
    await reader
    me = psutil_process().cpu_times()
    print(
        json.dumps(
            {
                "messages": res.dashboard_messages,
                "readings": res.received_gpu_readings,
                "lat_ms": [round(x * 1000, 1) for x in res.latencies],
                "server_ms": [round(x * 1000, 1) for x in res.server_latencies],
                "delivery_ms": [round(x * 1000, 1) for x in res.deliveries],
                "errors": res.dashboard_errors,
                "cpu_s": me.user + me.system,
            }
        )
    )
    return 0


def dashboards_merge(outputs: list[dict]) -> dict:
    """The dashboard processes' figures as one: counts summed, percentiles over every reading."""
    lat = [x for out in outputs for x in out["lat_ms"]]
    srv = [x for out in outputs for x in out["server_ms"]]
    delivery = [x for out in outputs for x in out["delivery_ms"]]
    return {
        "messages": sum(out["messages"] for out in outputs),
        "readings": sum(out["readings"] for out in outputs),
        "n": len(lat),
        "p50": statistics.median(lat) if lat else None,
        "p95": pct(lat, 0.95) if lat else None,
        "max": max(lat) if lat else None,
        "server_p50": statistics.median(srv) if srv else None,
        "server_p95": pct(srv, 0.95) if srv else None,
        "delivery_p50": statistics.median(delivery) if delivery else None,
        "delivery_p95": pct(delivery, 0.95) if delivery else None,
        "cpu_s": sum(out["cpu_s"] for out in outputs),
        "errors": sum(out["errors"] for out in outputs),
    }


def client_gc_tune() -> None:
    """The benchmark's own clients parse and build thousands of short-lived objects a second:
    with the collector's defaults its pauses showed up as agent -> dashboard latency."""
    import gc

    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def psutil_process():
    import psutil

    return psutil.Process()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def main_async(args) -> int:
    import psutil
    from asgiref.sync import sync_to_async

    client_gc_tune()  # this process runs the simulated agents

    from fleetagent import protocol

    nodes, cookie = await sync_to_async(setup_fleet)(args.hosts)
    try:
        server = await asyncio.to_thread(console_start, args.port or None, workers=args.workers, profile=args.profile)
    except RuntimeError as exc:
        print(f"uvicorn did not start: {exc}", file=sys.stderr)
        return 1
    port = server.url.rsplit(":", 1)[1]
    print(f"console pid {server.processes[0].pid} on port {port}", file=sys.stderr)
    try:
        res = Results()
        stop = asyncio.Event()
        base = f"ws://127.0.0.1:{port}"
        # Several processes, as browsers are: one process parsing 20 copies of each batch in
        # turn made the last dashboard's latency include the other 19's parsing.
        procs = max(1, min(args.dashboard_procs, args.dashboards))
        shares = [args.dashboards // procs + (i < args.dashboards % procs) for i in range(procs)]
        dash_procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--role",
                "dashboards",
                "--dashboards",
                str(share),
                "--url",
                base + "/ws/ops/fleet/",
                "--cookie",
                cookie,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                cwd=ROOT,
            )
            for share in shares
        ]
        agents_started = time.monotonic()
        agents = [
            asyncio.create_task(run_agent(base + "/ws/agent/", n, t, args.gpus, stop, res, protocol)) for n, t in nodes
        ]
        # The dashboards are open while the fleet connects (a console restart, in effect: every
        # hello within seconds); the measured window, after a warm-up, holds steady running only.
        deadline = time.monotonic() + 120
        while len(res.welcomed) < len(nodes) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        all_welcomed_s = time.monotonic() - agents_started
        window = (time.time() + args.warmup, time.time() + args.warmup + args.duration)
        for proc in dash_procs:
            proc.stdin.write(f"{window[0]} {window[1]}\n".encode())
            await proc.stdin.drain()
        await asyncio.sleep(max(0.0, window[0] - time.time()))
        server_procs = server_processes(server)
        me = psutil.Process()
        server_cpu0, my_cpu0 = cpu_total(server_procs), me.cpu_times()
        t0 = time.monotonic()
        res.measuring = True
        await asyncio.sleep(max(0.0, window[1] - time.time()))
        res.measuring = False
        elapsed = time.monotonic() - t0
        server_cpu1, my_cpu1 = cpu_total(server_procs), me.cpu_times()
        outs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in dash_procs)), timeout=60)
        if not all(out.strip() for out, _ in outs):
            raise RuntimeError("a dashboard client process printed no figures (its error is above)")
        dash = dashboards_merge([json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outs])
        await asyncio.sleep(2.5)  # let the last persist interval land
        persisted = await sync_to_async(persisted_count)(*window)
        stop.set()
        rollup = await sync_to_async(rollup_check)(window[1])
        await asyncio.gather(*agents, return_exceptions=True)
    finally:
        server.stop()

    def cpu_s(a, b) -> float:
        return (b.user - a.user) + (b.system - a.system)

    def cpu(a, b) -> float:
        return 100.0 * cpu_s(a, b) / elapsed

    loads = os.getloadavg()

    print(
        f"fleet ingest: {args.hosts} hosts x {args.gpus} GPUs = {args.hosts * args.gpus} GPUs at 1 Hz, "
        f"{args.dashboards} dashboards ({procs} client processes), {args.workers} console "
        f"process{'es' if args.workers > 1 else ''}, {elapsed:.1f} s measured after {args.warmup:.0f} s warm-up"
    )
    print(
        f"  DB: {os.environ['DATABASE_URL'].rsplit('@', 1)[-1]}  channel layer: Redis {os.environ['REDIS_URL'].rsplit('@', 1)[-1]}"
    )
    print(
        f"  sent:        {res.sent_samples / elapsed:8.1f} GPU samples/s ({res.sent_messages / elapsed:.1f} agent messages/s)"
    )
    print(f"  persisted:   {persisted / elapsed:8.1f} GPU samples/s (1 s rows, one COPY per second)")
    print(
        f"  rolled up:   {rollup['rolled_up']} 1 min rows from {rollup['raw_deleted']} 1 s rows in {rollup['s']:.1f} s "
        "(the downsample task run as if an hour had passed)"
    )
    per_dash = dash["readings"] / elapsed / max(1, args.dashboards)
    print(
        f"  dashboards:  {per_dash:8.1f} GPU readings/s each, "
        f"{dash['messages'] / elapsed / max(1, args.dashboards):.1f} batched messages/s each"
    )
    if dash["n"]:
        print(
            f"  agent->dashboard latency: p50 {dash['p50']:.0f} ms, p95 {dash['p95']:.0f} ms, "
            f"max {dash['max']:.0f} ms  (n={dash['n']})"
        )
        print(
            f"    of which in the console (agent ts -> batch encoded): p50 {dash['server_p50']:.0f} ms, "
            f"p95 {dash['server_p95']:.0f} ms; the rest is the socket and the dashboard clients' own queue"
        )
        relay = ", and with several console processes the relay of the others' batches through Redis"
        print(
            f"    a batch from encoded to a dashboard: p50 {dash['delivery_p50']:.0f} ms, p95 {dash['delivery_p95']:.0f} ms "
            f"(the socket, the client's queue{relay if args.workers > 1 else ''})"
        )
    print(
        f"  CPU: server (uvicorn, {args.workers} process{'es' if args.workers > 1 else ''}) "
        f"{cpu(server_cpu0, server_cpu1):.0f}% of one core in all; "
        f"agent simulator {cpu(my_cpu0, my_cpu1):.0f}%; dashboard clients {100 * dash['cpu_s'] / (elapsed + args.warmup):.0f}% "
        f"(whole run); {os.cpu_count()} cores, load avg {loads[0]:.2f} / {loads[1]:.2f} / {loads[2]:.2f} (1/5/15 min)"
    )
    # Load-independent: the console's CPU time per 1,000 agent frames received (each frame is
    # one host's sample with all its GPUs), whatever else the machine was running.
    frames = max(1, res.sent_messages)
    print(
        f"  console CPU per 1,000 agent frames: {1000 * cpu_s(server_cpu0, server_cpu1) / frames:.3f} s "
        f"({frames} frames of {args.gpus} GPUs)"
    )
    # What a console restart looks like to the fleet: every agent connecting within seconds
    # (the simulated hosts spread their first attempt over 3 s, as jittered backoff does).
    print(
        f"  agents welcomed before the warm-up: {len(res.welcomed)} of {len(nodes)}, "
        f"all {all_welcomed_s:.1f} s after the first tried to connect"
    )
    if res.agent_errors or dash["errors"]:
        print(
            f"  connection errors (each retried, as the agent and the page do): agents {res.agent_errors}, "
            f"dashboards {dash['errors']}"
        )
    ok = bool(dash["n"]) and dash["p95"] < 500
    print(f"  target p95 < 500 ms: {'met' if ok else 'NOT met'}")
    figures = {
        "hosts": args.hosts,
        "gpus": args.gpus,
        "workers": args.workers,
        "p50_ms": dash["p50"],
        "p95_ms": dash["p95"],
        "console_p95_ms": dash["server_p95"],
        "cpu_s_per_1000_frames": 1000 * cpu_s(server_cpu0, server_cpu1) / frames,
        "persisted_per_s": persisted / elapsed,
        "sent_per_s": res.sent_samples / elapsed,
        "load_1min": loads[0],
        "all_welcomed_s": all_welcomed_s,
    }
    if args.baseline:
        baseline_compare(figures, json.loads(Path(args.baseline).read_text()), args.baseline)
    if args.save:
        Path(args.save).write_text(json.dumps(figures, indent=1) + "\n")
    return 0


def baseline_compare(now: dict, before: dict, name: str) -> None:
    """Print this run's headline figures next to a run saved with --save (e.g. before a change)."""
    if (before.get("hosts"), before.get("workers")) != (now["hosts"], now["workers"]):
        print(f"  baseline {name}: another shape ({before.get('hosts')} hosts, {before.get('workers')} workers)")
        return
    print(f"  against the baseline {name} (load avg {before['load_1min']:.2f} then, {now['load_1min']:.2f} now):")
    for key, label in (
        ("cpu_s_per_1000_frames", "console CPU s per 1,000 frames"),
        ("p95_ms", "agent->dashboard p95 ms"),
        ("console_p95_ms", "in-console p95 ms"),
        ("persisted_per_s", "GPU samples persisted/s"),
        ("all_welcomed_s", "s until every agent was welcomed"),
    ):
        a, b = before.get(key), now[key]
        if a:
            print(f"    {label:32s} {a:9.3f} -> {b:9.3f}  ({100 * (b - a) / a:+.0f}%)")


def console_start(port: int | None = None, *, workers: int = 1, profile: str | None = None):
    """The console under test (tests.support.live_server), ready when /healthz answers;
    under cProfile (every thread, written to ``profile`` when it stops) if asked."""
    return console_server_start(
        launcher=(str(ROOT / "bench" / "profiled.py"), str(Path(profile).resolve())) if profile else (),
        # DEBUG off, as in production: DEBUG keeps every SQL statement in memory
        # (CursorDebugWrapper) and makes WhiteNoise look at the disk on every static request.
        env={**os.environ, "DEBUG": os.environ.get("DEBUG", "0")},
        port=port,
        lifespan=None,
        ws="websockets-sansio",
        access_log=False,
        timeout_s=60,
        extra_args=server_args(workers),
    )


def server_args(workers: int = 1) -> list[str]:
    """uvicorn's options past console_server_start's; ``workers`` > 1 is several console processes sharing the fleet."""
    args = ["--ws-max-size", "1048576"]
    # One compressor per browser per batch (20 times the same text) costs more CPU than the
    # console has; batches are compact JSON already.
    args += ["--ws-per-message-deflate", "false"]
    if workers > 1:
        args += ["--workers", str(workers)]
    return args


def server_processes(server) -> list:
    import psutil

    root = psutil.Process(server.processes[0].pid)
    return [root, *root.children(recursive=True)]


def cpu_total(procs: list):
    """Summed user/system CPU seconds of the console's processes (a supervisor and its workers)."""
    from types import SimpleNamespace

    user = system = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except Exception:  # noqa: BLE001 - a worker that exited counts nothing
            continue
        user += times.user
        system += times.system
    return SimpleNamespace(user=user, system=system)


def main() -> int:
    args = parse_args()
    if args.role == "dashboards":
        return asyncio.run(dashboards_main(args))
    if args.role == "agents":
        return asyncio.run(agents_main(args))
    return asyncio.run(asyncio.wait_for(main_async(args), timeout=args.warmup + args.duration + 120))


if __name__ == "__main__":
    sys.exit(main())
