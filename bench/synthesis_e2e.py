"""End-to-end synthesis benchmark: API → queue → node → engine, on PostgreSQL + Redis.

Starts a real server in subprocesses (uvicorn for the API, a fresh database
``<DATABASE_URL db>_e2e_<pid>`` migrated and seeded) with the nodes served one of two ways
(``--path``, default both, one after the other, each on its own fresh server):

- ``host``: the product's GPU host, ``python -m fleetagent --console URL --token vfn_… --broker
  redis://…`` (protocol v3) started with no database variables in its environment: it claims
  each job over its websocket, streams the audio back as binary frames, and the console writes
  the WAV and settles;
- ``legacy``: the database-backed Celery worker (``celery -A console worker`` on the nodes'
  queues), which claims and settles in SQL: the baseline.

It drives ``POST /v1/audio/speech`` with the official ``openai`` client, then reads each job's
record to split the latency into the engine's own time (``gpu_seconds``, measured on the node
around ``engine.synthesize``) and everything else (API + billing + queue + node + file + wake-up):

    overhead = client-observed latency − engine time

Bounded: a warm-up, a sequential run (pure overhead) and a concurrent run (throughput), each
capped by request count and seconds. Target (issue 10): overhead p95 ≤ 47.5 ms on the host path.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/vf_bench REDIS_URL=redis://127.0.0.1:6379/7 \\
        .venv/bin/python bench/synthesis_e2e.py [--path host|legacy|both] [--requests 200] [--seconds 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import openai  # noqa: E402

# Issue 10's acceptance: the host path's overhead p95 no worse than the legacy worker's then.
TARGET_P95_MS = 47.5
PATHS = {"host": "v3 GPU host (python -m fleetagent, no database)", "legacy": "legacy DB worker (celery -A console)"}

TEXTS = ["你好，欢迎使用语音合成。", "今天天气很好。", "谢谢你的耐心等待。", "我们明天见。"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def parse_ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def run(server, key: str, *, total: int, seconds: float, concurrency: int, seed_base: int) -> dict:
    api = openai.OpenAI(api_key=key, base_url=f"{server.url}/v1", max_retries=0, timeout=60)
    results: list[tuple[float, int, float, float]] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = {"n": 0}
    stop_at = time.monotonic() + seconds

    def worker() -> None:
        while time.monotonic() < stop_at:
            with lock:
                if counter["n"] >= total:
                    return
                n = counter["n"]
                counter["n"] += 1
            started = time.perf_counter()
            wall_start = time.time()
            try:
                raw = api.audio.speech.with_raw_response.create(
                    model="cosyvoice-3",
                    voice="zh-female",
                    input=TEXTS[n % len(TEXTS)],
                    response_format="wav",
                    extra_body={"seed": seed_base + n},
                )
                assert len(raw.content) > 44  # the whole WAV body was received
                elapsed = time.perf_counter() - started
                with lock:
                    results.append((elapsed, int(raw.headers["x-job-id"]), wall_start, time.time()))
            except openai.APIError as exc:
                with lock:
                    errors.append(repr(exc)[:200])

    began = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began

    # Read the job records (not timed): engine time and the stage timestamps.
    with httpx.Client(base_url=f"{server.url}/api/v1", headers={"Authorization": f"Bearer {key}"}) as rest:
        jobs = {job_id: rest.get(f"jobs/{job_id}").json() for _, job_id, _, _ in results}
    latency = [elapsed * 1000 for elapsed, _, _, _ in results]
    engine = [jobs[job_id]["gpu_seconds"] * 1000 for _, job_id, _, _ in results]
    overhead = [lat - eng for lat, eng in zip(latency, engine, strict=True)]
    # Stages from the job's own timestamps (same machine, same clock as the client).
    stages: dict[str, list[float]] = {"accept": [], "dispatch": [], "pickup": [], "run-engine": [], "return": []}
    for _, job_id, sent, received in results:
        job = jobs[job_id]
        created, queued = parse_ts(job["created_at"]), parse_ts(job["queued_at"])
        started, finished = parse_ts(job["started_at"]), parse_ts(job["finished_at"])
        stages["accept"].append((created - sent) * 1000)
        stages["dispatch"].append((queued - created) * 1000)
        stages["pickup"].append((started - queued) * 1000)
        stages["run-engine"].append((finished - started - job["gpu_seconds"]) * 1000)
        stages["return"].append((received - finished) * 1000)
    return {
        "requests": len(results),
        "errors": errors,
        "wall_s": wall,
        "rps": len(results) / wall if wall else 0.0,
        "latency": latency,
        "engine": engine,
        "overhead": overhead,
        "stages": stages,
        "audio_s": statistics.fmean(jobs[j]["audio_seconds"] for _, j, _, _ in results) if results else 0.0,
        "nodes": sorted({jobs[j]["node"] for _, j, _, _ in results}),
    }


def baseline(server, key: str, *, total: int = 50) -> dict[str, list[float]]:
    """Latency floor of this server under today's machine load: requests with no job at all."""
    out: dict[str, list[float]] = {}
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as http:
        for path in ("/healthz", "/v1/models", "/api/v1/quota"):
            times = []
            for _ in range(total):
                started = time.perf_counter()
                assert http.get(path).status_code == 200
                times.append((time.perf_counter() - started) * 1000)
            out[path] = times
    return out


def report(name: str, figures: dict) -> None:
    def line(label: str, values: list[float]) -> str:
        return (
            f"  {label:<38} p50 {pct(values, 50):7.1f} ms   p95 {pct(values, 95):7.1f} ms   "
            f"max {max(values) if values else float('nan'):7.1f} ms"
        )

    print(f"\n{name}: {figures['requests']} requests in {figures['wall_s']:.1f} s = {figures['rps']:.1f} requests/s")
    print(f"  nodes {', '.join(figures['nodes'])}; mean audio {figures['audio_s']:.2f} s per request")
    print(line("end-to-end latency (client)", figures["latency"]))
    print(line("engine time (job.gpu_seconds)", figures["engine"]))
    print(line("API + queue overhead (latency−engine)", figures["overhead"]))
    labels = {
        "accept": "  request → job row (auth, limits)",
        "dispatch": "  job row → queued (reserve, publish)",
        "pickup": "  queued → running (queue pickup)",
        "run-engine": "  running → done, minus engine",
        "return": "  done → client has audio (wake-up)",
    }
    for stage, values in figures["stages"].items():
        print(line(labels[stage], values))
    if figures["errors"]:
        print(f"  {len(figures['errors'])} errors, first: {figures['errors'][0]}")


def bench_path(path: str, args: argparse.Namespace) -> dict:
    """One fresh server whose nodes are served the ``path`` way; its sequential and concurrent figures."""
    from tests.support.live_server import live_server_start

    worker = {"host": "host", "legacy": "celery"}[path]
    print(f"\n=== {PATHS[path]}")
    with tempfile.TemporaryDirectory(prefix=f"vf-bench-{path}-") as tmp:
        t0 = time.perf_counter()
        server = live_server_start(Path(tmp), worker_concurrency=args.worker_concurrency, worker=worker)
        try:
            print(
                f"server up in {time.perf_counter() - t0:.1f} s: uvicorn (API) + {PATHS[path]} for {server.data['nodes']}"
            )
            key = server.key("enterprise")  # 1,200 requests/min, 32 concurrent jobs, dedicated node
            run(server, key, total=20, seconds=20, concurrency=1, seed_base=1)  # warm-up
            print("\nbaseline (no synthesis), 50 sequential requests each:")
            for url_path, times in baseline(server, key).items():
                print(f"  GET {url_path:<32} p50 {pct(times, 50):7.1f} ms   p95 {pct(times, 95):7.1f} ms")
            sequential = run(server, key, total=args.requests, seconds=args.seconds, concurrency=1, seed_base=1000)
            report("sequential (1 client)", sequential)
            concurrent = run(
                server, key, total=args.requests, seconds=args.seconds, concurrency=args.concurrency, seed_base=100_000
            )
            report(f"concurrent ({args.concurrency} clients, node concurrency {args.worker_concurrency})", concurrent)
        finally:
            server.stop()
    return {"sequential": sequential, "concurrent": concurrent, "load": os.getloadavg()}


def compare(results: dict[str, dict]) -> bool:
    """The side-by-side table; whether the host path (when measured) meets the target."""
    print(f"\ncomparison (overhead = latency − engine time; target: host p95 ≤ {TARGET_P95_MS} ms)")
    print(
        f"  {'path':<8} {'seq p50':>9} {'seq p95':>9} {'seq max':>9} {'conc p95':>9} {'conc req/s':>11}  load 1/5/15 min"
    )
    for path, figures in results.items():
        seq, conc = figures["sequential"]["overhead"], figures["concurrent"]["overhead"]
        print(
            f"  {path:<8} {pct(seq, 50):7.1f}ms {pct(seq, 95):7.1f}ms {max(seq, default=float('nan')):7.1f}ms "
            f"{pct(conc, 95):7.1f}ms {figures['concurrent']['rps']:11.2f}  "
            + "/".join(f"{x:.2f}" for x in figures["load"])
        )
    if "host" in results and "legacy" in results:
        host, legacy = (pct(results[p]["sequential"]["overhead"], 95) for p in ("host", "legacy"))
        rate = results["host"]["concurrent"]["rps"] / (results["legacy"]["concurrent"]["rps"] or float("nan"))
        print(f"  host − legacy: sequential overhead p95 {host - legacy:+.1f} ms; concurrent throughput ×{rate:.2f}")
    if "host" not in results:
        return True
    host_p95 = pct(results["host"]["sequential"]["overhead"], 95)
    ok = host_p95 <= TARGET_P95_MS and not results["host"]["sequential"]["errors"]
    print(
        f"  host path sequential overhead p95 {host_p95:.1f} ms: {'meets' if ok else 'MISSES'} the {TARGET_P95_MS} ms target"
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", choices=("host", "legacy", "both"), default="both", help="which node path to measure")
    parser.add_argument("--requests", type=int, default=200, help="cap per run")
    parser.add_argument("--seconds", type=float, default=30.0, help="cap per run")
    parser.add_argument("--concurrency", type=int, default=4, help="clients in the concurrent run")
    parser.add_argument("--worker-concurrency", type=int, default=1, help="jobs the node (host or worker) runs at once")
    args = parser.parse_args()

    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/vf_bench")
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/7")
    if not os.environ["DATABASE_URL"].startswith("postgres") or not os.environ["REDIS_URL"]:
        print("this benchmark measures the real shape: set DATABASE_URL to PostgreSQL and REDIS_URL", file=sys.stderr)
        return 2
    print(f"database {os.environ['DATABASE_URL'].rsplit('/', 1)[-1]}_e2e_<pid>, broker {os.environ['REDIS_URL']}")
    print(
        f"cores {os.cpu_count()}, load average {'/'.join(f'{x:.2f}' for x in os.getloadavg())} "
        "(1/5/15 min; on a shared machine other jobs run too)"
    )
    paths = ["legacy", "host"] if args.path == "both" else [args.path]
    results = {path: bench_path(path, args) for path in paths}
    ok = compare(results)
    print(f"\nload average after: {'/'.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
