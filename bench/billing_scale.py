"""Money and tenancy at scale, on PostgreSQL: 10,000 tenants, 200 nodes, 2,000,000 jobs.

    .venv/bin/python bench/billing_scale.py --database-url postgres://postgres@127.0.0.1:5432/vf_scale \\
        [--tenants 10000 --nodes 200 --jobs 2000000 --big-tenant-jobs 100000] [--reuse] [--runs 20]

1. Creates the database (dropping it first unless --reuse finds it seeded), migrates, and
   seeds it with ``manage.py seed_scale`` (COPY, progress bar), then checks it with
   ``billing_reconcile``.
2. Measures in-process with Django's test client (no network in the figures): every portal
   page of the tenant holding ``--big-tenant-jobs`` jobs, /api/v1/jobs and /api/v1/usage with
   its API key, the staff overview recomputed (?fresh=1) and cached, and /ops/; p50 / p95 /
   max in ms and the queries per page.
3. Closes the previous month (one invoice per tenant) and runs billing_reconcile again.

Targets (issue 12): pages p95 < 300 ms; month close < 60 s; reconcile < 120 s. The load
average is printed beside the figures: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PAGE_P95_MS = 300.0
CLOSE_S = 60.0
RECONCILE_S = 120.0


def _admin_run(url: str, sql: str) -> None:
    import psycopg

    admin = urlunsplit(urlsplit(url)._replace(path="/postgres", query=""))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql)


def _manage(env: dict, *args: str, check: bool = True) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env, check=check)
    return time.monotonic() - started


def _prepare(args, env: dict) -> dict:
    name = urlsplit(args.database_url).path.lstrip("/")
    figures = {}
    if not args.reuse:
        _admin_run(args.database_url, f'DROP DATABASE IF EXISTS "{name}"')
        _admin_run(args.database_url, f'CREATE DATABASE "{name}"')
        _manage(env, "migrate", "--noinput", "-v0")
        figures["seed_s"] = _manage(
            env,
            "seed_scale",
            "--tenants",
            str(args.tenants),
            "--nodes",
            str(args.nodes),
            "--jobs",
            str(args.jobs),
            "--big-tenant-jobs",
            str(args.big_tenant_jobs),
        )
    else:
        _manage(env, "migrate", "--noinput", "-v0")  # a database seeded by an older checkout
    figures["reconcile_after_seed_s"] = _manage(env, "billing_reconcile")
    return figures


def _timed(client, url: str, runs: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url)  # warm: templates, caches, an API key's last_used_at
    samples = []
    queries = 0
    for _ in range(runs):
        with CaptureQueriesContext(connection) as ctx:
            started = time.perf_counter()
            response = client.get(url)
            samples.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{url}: HTTP {response.status_code}: {response.content[:300]!r}")
        queries = len(ctx.captured_queries)
    samples.sort()
    p95 = samples[min(len(samples) - 1, int(round(0.95 * (len(samples) - 1))))]
    return {"p50": statistics.median(samples), "p95": p95, "max": samples[-1], "queries": queries, "runs": runs}


def _measure(args) -> tuple[dict, dict]:
    import django

    django.setup()
    from django.conf import settings
    from django.core.cache import cache
    from django.test import Client
    from django.utils import timezone

    from billing.models import Tenant
    from billing.periods import month_previous
    from billing.services import api_key_create, billing_period_close, user_create

    settings.ALLOWED_HOSTS = ["*"]
    from django.apps import apps

    big = Tenant.objects.select_related("plan").get(name="Scale Big Co")
    job_model = apps.get_model("inference.SynthesisJob")
    sizes = {
        "tenants": Tenant.objects.count(),
        "nodes": apps.get_model("fleetagent.Node").objects.count(),
        "jobs": job_model.objects.count(),
        "big": job_model.objects.filter(tenant=big).count(),
    }
    owner = big.memberships.get(role="owner").user
    _, key = api_key_create(tenant=big, name="bench")
    staff = user_create(username=f"bench-staff-{os.getpid()}", password="pw-bench-123", is_staff=True)
    portal, api, admin = Client(), Client(HTTP_AUTHORIZATION=f"Bearer {key}"), Client()
    portal.force_login(owner)
    admin.force_login(staff)
    pages = {}
    for url in ("/", "/playground/", "/voices/", "/keys/", "/plan/", "/invoices/", "/team/", "/alerts/"):
        pages[f"portal {url}"] = _timed(portal, url, args.runs)
    for url in ("/api/v1/jobs", "/api/v1/jobs?limit=100&offset=90000", "/api/v1/usage?days=30", "/api/v1/quota"):
        pages[f"api {url}"] = _timed(api, url, args.runs)
    cache.clear()
    pages["staff /staff/?fresh=1"] = _timed(admin, "/staff/?fresh=1", max(3, args.runs // 5))
    pages["staff /staff/ (cached)"] = _timed(admin, "/staff/", args.runs)
    pages["ops /ops/"] = _timed(admin, "/ops/", args.runs)
    period = month_previous(timezone.now().date())
    started = time.monotonic()
    counts = billing_period_close(period_start=period)
    other = {"month_close_s": time.monotonic() - started, "month_close": counts, "sizes": sizes}
    return pages, other


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2_000_000)
    parser.add_argument("--big-tenant-jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--reuse", action="store_true", help="measure an already seeded database")
    args = parser.parse_args()
    if not args.database_url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("--database-url (or DATABASE_URL) must name a PostgreSQL database")
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "VOXFLEET_PRODUCTION")}
    env.update(
        {
            "DATABASE_URL": args.database_url,
            "DJANGO_SETTINGS_MODULE": "console.settings",
            "LOG_LEVEL": "WARNING",
            "VOXFLEET_VAR_DIR": str(Path(os.environ.get("TMPDIR", "/tmp")) / "voxfleet-bench-scale"),
        }
    )
    load_before = os.getloadavg()
    figures = _prepare(args, env)
    os.environ.clear()
    os.environ.update(env)
    pages, other = _measure(args)
    sizes = other.pop("sizes")
    figures.update(other)
    figures["reconcile_after_close_s"] = _manage(env, "billing_reconcile")
    load_after = os.getloadavg()

    print(f"\nbilling at scale: {sizes['tenants']:,} tenants, {sizes['nodes']} nodes, {sizes['jobs']:,} jobs")
    print(f"(one tenant with {sizes['big']:,}); PostgreSQL, in-process test client, {args.runs} runs a page")
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}", end="")
    print(f", after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} ({os.cpu_count()} cores)\n")
    print(f"{'page':42} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'queries':>8}")
    ok = True
    for name, f in pages.items():
        flag = "" if f["p95"] < PAGE_P95_MS else "  over 300 ms"
        ok &= not flag
        print(f"{name:42} {f['p50']:8.1f} {f['p95']:8.1f} {f['max']:8.1f} {f['queries']:8d}{flag}")
    print()
    if "seed_s" in figures:
        print(f"seed (COPY, then ANALYZE)         {figures['seed_s']:8.1f} s")
    for label, key, target in (
        ("billing_reconcile after seed", "reconcile_after_seed_s", RECONCILE_S),
        ("month close (billing_period_close)", "month_close_s", CLOSE_S),
        ("billing_reconcile after close", "reconcile_after_close_s", RECONCILE_S),
    ):
        flag = "" if figures[key] < target else f"  over {target:.0f} s"
        ok &= not flag
        print(f"{label:34} {figures[key]:8.1f} s (target < {target:.0f} s){flag}")
    print(f"month close: {figures['month_close']}")
    print("\nall targets met" if ok else "\nsome targets missed (see above)")


if __name__ == "__main__":
    main()
