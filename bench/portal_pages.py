"""Per-page latency of the portal on the embedded default with the demo data.

Builds a throwaway SQLite database (migrate + seed_demo + a few real synthesis jobs per
demo tenant, run through the jobs service on the local node), then renders every portal
page in-process with Django's test client and prints median / p95 / max milliseconds and
the query count per page. Budget: every page < 300 ms.

    .venv/bin/python bench/portal_pages.py [--runs 20] [--jobs 8]

In-process: no network or ASGI server in the figures (they measure what the server spends).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BUDGET_MS = 300.0


def _setup_env(tmp: Path) -> None:
    for name in ("REDIS_URL", "VOXFLEET_PRODUCTION"):
        os.environ.pop(name, None)
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp / 'bench.sqlite3'}"
    os.environ["VOXFLEET_VAR_DIR"] = str(tmp / "var")
    os.environ["OUTPUTS_DIR"] = str(tmp / "outputs")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["DJANGO_SETTINGS_MODULE"] = "console.settings"


def _seed(jobs_per_tenant: int) -> None:
    from django.conf import settings
    from django.core.management import call_command

    from billing.models import Tenant
    from fleetagent.services import node_ensure
    from inference.services import job_create, job_execute
    from tests.support.fleet import agent_hello

    call_command("migrate", verbosity=0, interactive=False)
    call_command("seed_demo", verbosity=0, stdout=open(os.devnull, "w"))
    # Online as its agent's hello makes it (no agent runs here, so no channel).
    node = agent_hello(node_ensure(name=settings.EMBEDDED_NODE_NAME), hello={}, channel_name="")
    texts = ["你好，欢迎使用语音合成。", "今天天气很好。", "Hello from Voxfleet.", "我们明天见。"]
    for tenant in Tenant.objects.all():
        for i in range(jobs_per_tenant):
            instruction = "用四川话说这句话" if tenant.plan.allow_dialects and i % 2 else None
            text = texts[i % len(texts)]
            if not tenant.plan.allows_language("en") and text.isascii():
                text = texts[0]
            job = job_create(tenant=tenant, text=text, voice="zh-female", instruction=instruction, seed=i + 1)
            job_execute(job_id=job.pk, node_name=node.name)


def _measure(client, url: str, runs: int) -> tuple[list[float], int, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(2):  # warm caches (templates, imports)
        client.get(url)
    times = []
    status = 0
    with CaptureQueriesContext(connection) as ctx:
        client.get(url)
    queries = len(ctx.captured_queries)
    for _ in range(runs):
        t0 = time.perf_counter()
        response = client.get(url)
        if hasattr(response, "streaming_content"):
            b"".join(response.streaming_content)
        times.append((time.perf_counter() - t0) * 1000)
        status = response.status_code
    return times, queries, status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=8, help="synthesis jobs per demo tenant")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vf-bench-portal-") as tmp:
        _setup_env(Path(tmp))
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.test import Client
        from django.test.utils import setup_test_environment

        setup_test_environment()
        t0 = time.perf_counter()
        _seed(args.jobs)
        print(f"seeded demo data + {args.jobs} jobs per tenant in {time.perf_counter() - t0:.1f} s")
        User = get_user_model()
        from billing.models import Invoice, Tenant
        from billing.services import invoice_draft_build
        from inference.models import SynthesisJob

        pro = Tenant.objects.get(name="Pearl Pro Media")
        invoice = invoice_draft_build(tenant=pro, period_start=__import__("datetime").date.today().replace(day=1))
        job = SynthesisJob.objects.filter(tenant=pro, status="succeeded").first()
        customer, staff = Client(), Client()
        customer.force_login(User.objects.get(username="pro"))
        staff.force_login(User.objects.get(username="admin"))
        anonymous = Client()
        pages = [
            ("anonymous", anonymous, "/accounts/login/"),
            ("anonymous", anonymous, "/signup/"),
            ("customer", customer, "/"),
            ("customer", customer, "/playground/"),
            (
                "customer",
                customer,
                "/playground/quote?text=%E4%BD%A0%E5%A5%BD&instruction=%E7%94%A8%E5%9B%9B%E5%B7%9D%E8%AF%9D",
            ),
            ("customer", customer, "/voices/"),
            ("customer", customer, "/keys/"),
            ("customer", customer, "/plan/"),
            ("customer", customer, "/invoices/"),
            ("customer", customer, "/team/"),
            ("customer", customer, f"/jobs/{job.pk}/audio" if job else "/"),
            ("customer", customer, f"/billing/invoices/{invoice.pk}.pdf"),
            ("staff", staff, "/staff/"),
            ("staff", staff, "/staff/?fresh=1"),
            ("staff", staff, "/ops/"),
        ]
        print(
            f"{Invoice.objects.count()} invoices, {SynthesisJob.objects.count()} jobs, {Tenant.objects.count()} tenants"
        )
        print(f"{'who':<10} {'page':<60} {'status':>6} {'queries':>7} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}")
        worst = 0.0
        for who, client, url in pages:
            times, queries, status = _measure(client, url, args.runs)
            times.sort()
            p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
            worst = max(worst, p95)
            flag = "" if p95 < BUDGET_MS else "  OVER BUDGET"
            print(
                f"{who:<10} {url[:60]:<60} {status:>6} {queries:>7} {statistics.median(times):>10.1f} {p95:>8.1f} {times[-1]:>8.1f}{flag}"
            )
        print(f"worst p95: {worst:.1f} ms (budget {BUDGET_MS:.0f} ms) -> {'OK' if worst < BUDGET_MS else 'OVER'}")
        return 0 if worst < BUDGET_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
