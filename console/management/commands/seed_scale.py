"""Seed a PostgreSQL database at fleet scale for bench/billing_scale.py: tenants, nodes, jobs
with their reservations and ledger rows, bulk-inserted with COPY, consistent for billing_reconcile.

    manage.py seed_scale --tenants 10000 --nodes 200 --jobs 2000000 --big-tenant-jobs 100000

What it writes, all as the services would have (billing_reconcile checks it afterwards):
tenants (90 % Pro, 9 % Free, 1 % Enterprise; three time zones) each with an owner and a
billing account; ``--nodes`` online GPU nodes; ``--jobs`` jobs spread over the previous and
the current billing month (95 % succeeded and settled, 5 % failed and released), the first
Enterprise tenant ("Scale Big Co") holding ``--big-tenant-jobs`` of them. Each allowance
window has its grant row, each job a reserve row and a settle or release row, each closed
window its write-off; the open window's counter is what its rows leave. Free tenants get no
jobs (their daily windows would need a grant per day).

Rows are streamed with COPY through Django's connection (psycopg 3), columns taken from the
models' metadata (``apps.get_model``: generic, like the migrations), defaults filled from the
fields, ids assigned here and the sequences moved past them at the end.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import zoneinfo

from django.apps import apps
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils import timezone
from tqdm import tqdm

ZONES = ("UTC", "Asia/Shanghai", "America/New_York")
BIG_TENANT = "Scale Big Co"
BIG_USER = "scale-big"
PASSWORD = "pw-scale-123"


def _model(label: str):
    return apps.get_model(label)


class _Copier:
    """COPY rows of one model: dicts by attname, missing columns from the field defaults."""

    def __init__(self, label: str, bar: tqdm):
        self.model = _model(label)
        self.fields = [f for f in self.model._meta.concrete_fields]
        self.table = self.model._meta.db_table
        self.bar = bar
        self.defaults = {}
        for f in self.fields:
            if f.has_default():
                value = f.get_default()
                self.defaults[f.attname] = value
            elif f.null:
                self.defaults[f.attname] = None
            elif getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
                self.defaults[f.attname] = timezone.now()
            elif f.get_internal_type() in ("CharField", "TextField", "SlugField", "EmailField"):
                self.defaults[f.attname] = ""
        self.json = {f.attname for f in self.fields if f.get_internal_type() == "JSONField"}
        self.cursor = None
        self.copy = None

    def __enter__(self):
        self.cursor = connection.cursor().cursor  # the psycopg cursor under Django's wrapper
        columns = ", ".join(f'"{f.column}"' for f in self.fields)
        self._ctx = self.cursor.copy(f'COPY "{self.table}" ({columns}) FROM STDIN')
        self.copy = self._ctx.__enter__()
        return self

    def write(self, row: dict) -> None:
        values = []
        for f in self.fields:
            name = f.attname
            value = row[name] if name in row else self.defaults.get(name)
            if name in self.json and value is not None:
                value = json.dumps(value)
            values.append(value)
        self.copy.write_row(values)
        self.bar.update()

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        return False


def _next_id(label: str) -> int:
    model = _model(label)
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT COALESCE(MAX(id), 0) + 1 FROM "{model._meta.db_table}"')
        return cursor.fetchone()[0]


def _sequences_fix(labels) -> None:
    with connection.cursor() as cursor:
        for label in labels:
            table = _model(label)._meta.db_table
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), (SELECT COALESCE(MAX(id), 1) FROM \"{table}\"))"
            )


def _month_start(day: dt.date, tz) -> dt.datetime:
    return dt.datetime.combine(day.replace(day=1), dt.time(0), tzinfo=tz)


class Command(BaseCommand):
    help = "Bulk-seed tenants, nodes, jobs, reservations and ledger rows at scale (PostgreSQL only)."

    def add_arguments(self, parser):
        parser.add_argument("--tenants", type=int, default=10_000)
        parser.add_argument("--nodes", type=int, default=200)
        parser.add_argument("--jobs", type=int, default=2_000_000)
        parser.add_argument("--big-tenant-jobs", type=int, default=100_000)
        parser.add_argument("--seed", type=int, default=12)
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, tenants, nodes, jobs, big_tenant_jobs, seed, no_progress, **options):
        if connection.vendor != "postgresql":
            raise CommandError("seed_scale writes with COPY: point DATABASE_URL at PostgreSQL")
        if _model("billing.Tenant").objects.filter(name=BIG_TENANT).exists():
            raise CommandError("this database is already seeded (drop it and migrate again)")
        if big_tenant_jobs > jobs:
            raise CommandError("--big-tenant-jobs cannot exceed --jobs")
        rng = random.Random(seed)
        now = timezone.now()
        stream = getattr(self.stderr, "_out", self.stderr)
        total = tenants * 6 + nodes + jobs * 4
        with tqdm(total=total, desc="seeding", unit="row", disable=no_progress, file=stream, mininterval=1) as bar:
            with transaction.atomic():
                summary = self._seed(rng, now, tenants, nodes, jobs, big_tenant_jobs, bar)
            _sequences_fix(
                [
                    "auth.User",
                    "billing.Tenant",
                    "billing.Membership",
                    "billing.BillingAccount",
                    "billing.TokenReservation",
                    "billing.LedgerEntry",
                    "fleetagent.Node",
                    "inference.SynthesisJob",
                ]
            )
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        self.stdout.write(json.dumps(summary))

    def _seed(self, rng, now, n_tenants, n_nodes, n_jobs, big_jobs, bar) -> dict:
        Plan = _model("billing.Plan")
        plans = {p.code: p for p in Plan.objects.all()}
        password = make_password(PASSWORD)
        created = now - dt.timedelta(days=75)
        user_id, tenant_id = _next_id("auth.User"), _next_id("billing.Tenant")
        member_id, account_id = _next_id("billing.Membership"), _next_id("billing.BillingAccount")
        tenants = []  # (id, plan, tz)
        with _Copier("auth.User", bar) as users:
            for i in range(n_tenants):
                name = BIG_USER if i == 0 else f"scale-{i}"
                users.write(
                    {
                        "id": user_id + i,
                        "password": password,
                        "username": name,
                        "email": f"{name}@scale.example",
                        "is_active": True,
                        "date_joined": created,
                    }
                )
        with _Copier("billing.Tenant", bar) as rows:
            for i in range(n_tenants):
                code = "enterprise" if i == 0 or i % 100 == 1 else ("free" if i % 100 < 10 else "pro")
                tz = ZONES[i % len(ZONES)]
                name = BIG_TENANT if i == 0 else f"Scale Tenant {i:05d}"
                rows.write(
                    {
                        "id": tenant_id + i,
                        "name": name,
                        "slug": f"scale-{i}",
                        "plan_id": plans[code].pk,
                        "time_zone": tz,
                        "billing_email": f"billing{i}@scale.example",
                        "is_active": True,
                        "created_at": created,
                    }
                )
                tenants.append((tenant_id + i, plans[code], zoneinfo.ZoneInfo(tz)))
        with _Copier("billing.Membership", bar) as rows:
            for i, (tid, _, _) in enumerate(tenants):
                rows.write(
                    {
                        "id": member_id + i,
                        "tenant_id": tid,
                        "user_id": user_id + i,
                        "role": "owner",
                        "created_at": created,
                    }
                )
        node_id = _next_id("fleetagent.Node")
        node_names = []
        with _Copier("fleetagent.Node", bar) as rows:
            for i in range(n_nodes):
                name = f"scale-gpu-{i:03d}"
                node_names.append((node_id + i, name))
                rows.write(
                    {
                        "id": node_id + i,
                        "name": name,
                        "token_prefix": f"vfn_s{i:06d}",
                        "token_hash": "0" * 64,
                        "state": "online",
                        "gpu_model": "A10",
                        "gpu_count": 1,
                        "hostname": f"{name}.scale.example",
                        "engine": "cosyvoice3",
                        "last_seen_at": now,
                        "nvml_available": True,
                        "created_at": created,
                    }
                )
        # Jobs per tenant: the big tenant its share, the rest spread over the paying tenants.
        paying = [t for t in tenants[1:] if t[1].code != "free"]
        per_tenant = {tenants[0][0]: big_jobs}
        rest = n_jobs - big_jobs
        for _ in range(rest):
            tid = paying[rng.randrange(len(paying))][0] if paying else tenants[0][0]
            per_tenant[tid] = per_tenant.get(tid, 0) + 1
        res_id, led_id, job_id = (
            _next_id("billing.TokenReservation"),
            _next_id("billing.LedgerEntry"),
            _next_id("inference.SynthesisJob"),
        )
        counts = {"jobs": 0, "settled": 0, "released": 0, "ledger": 0}
        reservations = _Copier("billing.TokenReservation", bar)
        ledger = _Copier("billing.LedgerEntry", bar)
        jobs = _Copier("inference.SynthesisJob", bar)
        accounts: list[dict] = []
        # One COPY per table at a time (a connection runs one COPY at once): buffer per tenant.
        job_rows, res_rows, led_rows = [], [], []

        def flush():
            for copier, rows in ((reservations, res_rows), (ledger, led_rows), (jobs, job_rows)):
                if rows:
                    with copier:
                        for row in rows:
                            copier.write(row)
                    rows.clear()

        for tid, plan, tz in tenants:
            this_start = _month_start(now.astimezone(tz).date(), tz)
            prev_start = _month_start((this_start - dt.timedelta(days=1)).date(), tz)
            windows = [
                (prev_start, this_start),
                (this_start, _month_start((this_start + dt.timedelta(days=32)).date(), tz)),
            ]
            allowance = int(plan.allowance_tokens)
            if plan.allowance_period == "day":
                day = _month_start(now.astimezone(tz).date(), tz).replace(day=now.astimezone(tz).day)
                accounts.append(
                    {
                        "tenant_id": tid,
                        "window_start": day,
                        "window_end": day + dt.timedelta(days=1),
                        "allowance": allowance,
                        "used": 0,
                    }
                )
                led_rows.append(
                    {
                        "id": led_id,
                        "tenant_id": tid,
                        "kind": "grant",
                        "bucket": "allowance",
                        "available_delta": allowance,
                        "held_delta": 0,
                        "window_start": day,
                        "idempotency_key": f"grant:{tid}:{day.isoformat()}",
                        "note": plan.code,
                        "created_at": day,
                    }
                )
                led_id += 1
                continue
            n = per_tenant.get(tid, 0)
            used = {0: 0, 1: 0}
            for start, _end in windows:
                led_rows.append(
                    {
                        "id": led_id,
                        "tenant_id": tid,
                        "kind": "grant",
                        "bucket": "allowance",
                        "available_delta": allowance,
                        "held_delta": 0,
                        "window_start": start,
                        "idempotency_key": f"grant:{tid}:{start.isoformat()}",
                        "note": plan.code,
                        "created_at": start,
                    }
                )
                led_id += 1
            span_prev = (windows[0][1] - windows[0][0]).total_seconds()
            span_this = max(60.0, (now - windows[1][0]).total_seconds() - 60)
            for _ in range(n):
                w = 0 if rng.random() < span_prev / (span_prev + span_this) else 1
                start = windows[w][0]
                at = start + dt.timedelta(seconds=rng.uniform(0, span_prev if w == 0 else span_this))
                tokens = rng.randint(5, 40)
                if used[w] + tokens > allowance:
                    continue  # the window is spent: the service would have refused
                ok = rng.random() < 0.95
                finished = at + dt.timedelta(seconds=rng.uniform(0.5, 5))
                gpu = round(tokens * 0.00432 * rng.uniform(0.8, 1.2), 4)
                node = node_names[rng.randrange(len(node_names))] if node_names else (None, "")
                res_rows.append(
                    {
                        "id": res_id,
                        "tenant_id": tid,
                        "tokens": tokens,
                        "status": "settled" if ok else "released",
                        "reference": f"synthesis-job:{job_id}",
                        "window_start": start,
                        "from_allowance": tokens,
                        "from_topups": [],
                        "from_overage": 0,
                        "created_at": at,
                        "settled_at": finished if ok else None,
                        "released_at": None if ok else finished,
                        "release_reason": "" if ok else "job failed",
                        "gpu_seconds": gpu if ok else 0.0,
                        "node_name": node[1] if ok else "",
                        "gpu_model": "A10" if ok else "",
                    }
                )
                led_rows.append(
                    {
                        "id": led_id,
                        "tenant_id": tid,
                        "kind": "reserve",
                        "bucket": "allowance",
                        "available_delta": -tokens,
                        "held_delta": tokens,
                        "window_start": start,
                        "reservation_id": res_id,
                        "created_at": at,
                    }
                )
                led_rows.append(
                    {
                        "id": led_id + 1,
                        "tenant_id": tid,
                        "kind": "settle" if ok else "release",
                        "bucket": "held" if ok else "allowance",
                        "available_delta": 0 if ok else tokens,
                        "held_delta": -tokens,
                        "window_start": None if ok else start,
                        "reservation_id": res_id,
                        "idempotency_key": f"settle:{res_id}" if ok else f"release:{res_id}",
                        "created_at": finished,
                    }
                )
                led_id += 2
                if ok:
                    used[w] += tokens
                job_rows.append(
                    {
                        "id": job_id,
                        "tenant_id": tid,
                        "status": "succeeded" if ok else "failed",
                        "source": "api",
                        "voice_key": "zh-female",
                        "voice_name": "Xiaomei (Mandarin, female)",
                        "text": "你好，欢迎使用语音合成。",
                        "language": "zh",
                        "seed": 1 + (job_id % 100_000_000),
                        "speed": 1.0,
                        "tokens": tokens,
                        "reservation_id": res_id,
                        "node_id": node[0],
                        "attempts": 1,
                        "created_at": at,
                        "queued_at": at,
                        "deadline_at": at + dt.timedelta(minutes=2),
                        "started_at": at,
                        "finished_at": finished,
                        "gpu_seconds": gpu if ok else None,
                        "audio_seconds": round(tokens * 0.25, 3) if ok else None,
                        "rtf": 0.1 if ok else None,
                        "engine_version": "scale-seed",
                        "error_code": "" if ok else "engine_failed",
                        "error": "" if ok else "seeded failure",
                    }
                )
                counts["jobs"] += 1
                counts["settled" if ok else "released"] += 1
                res_id += 1
                job_id += 1
            # The previous window closed: its leftover is written off so it nets to zero.
            leftover = allowance - used[0]
            if leftover > 0:
                led_rows.append(
                    {
                        "id": led_id,
                        "tenant_id": tid,
                        "kind": "expiry",
                        "bucket": "allowance",
                        "available_delta": -leftover,
                        "held_delta": 0,
                        "window_start": windows[0][0],
                        "note": "allowance window closed",
                        "created_at": windows[0][1],
                    }
                )
                led_id += 1
            accounts.append(
                {
                    "tenant_id": tid,
                    "window_start": windows[1][0],
                    "window_end": windows[1][1],
                    "allowance": allowance,
                    "used": used[1],
                }
            )
            if len(led_rows) > 200_000:
                flush()
        flush()
        with _Copier("billing.BillingAccount", bar) as rows:
            for i, a in enumerate(accounts):
                rows.write(
                    {
                        "id": account_id + i,
                        "tenant_id": a["tenant_id"],
                        "window_start": a["window_start"],
                        "window_end": a["window_end"],
                        "allowance_tokens": a["allowance"],
                        "allowance_remaining": a["allowance"] - a["used"],
                        "created_at": created,
                        "gpu_rental_price_per_hour": None,
                    }
                )
        counts["tenants"] = n_tenants
        counts["nodes"] = n_nodes
        counts["ledger"] = led_id - 1
        counts["big_tenant"] = BIG_TENANT
        counts["big_user"] = BIG_USER
        counts["password"] = PASSWORD
        return counts
