"""Ledger reconciliation: re-derive every balance from ledger rows and compare (read-only).

Checks, per tenant: the open window's allowance counter equals its ledger rows; every closed
window nets to zero; every top-up's remaining equals its rows; held tokens equal the open
reservations; each reservation's rows match its state (reserve = tokens, one settlement or
full release, nothing after); settled usage equals consumed tokens.

Billing's own books only. The jobs against their reservations is a rule that needs the jobs
app too, so it lives there (``inference.reconcile``), reading reservations through
``reservation_states`` inside the same ``reconcile_snapshot``; ``manage.py billing_reconcile``
runs both.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator

from django.db import connection, transaction
from django.db.models import Count, Sum

from billing.models import (
    BillingAccount,
    LedgerBucket,
    LedgerEntry,
    LedgerKind,
    ReservationStatus,
    TokenReservation,
    TopUp,
)


@contextlib.contextmanager
def reconcile_snapshot() -> Iterator[None]:
    """One consistent, read-only view of the books for every query inside, without blocking writers.

    Inside a caller's transaction, that transaction decides the snapshot.
    """
    if connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield


def ledger_drift_find() -> list[str]:
    """Every inconsistency in the ledger, as human-readable lines; empty means the books balance."""
    with reconcile_snapshot():
        return _drift_find()


def reservation_states() -> dict[int, tuple[int, str]]:
    """Every reservation's (tokens, status) by id, for checks that hold reservations elsewhere."""
    return {
        r["id"]: (r["tokens"], r["status"])
        for r in TokenReservation.objects.values("id", "tokens", "status").iterator(chunk_size=5000)
    }


def _drift_find() -> list[str]:
    drift: list[str] = []
    allowance = defaultdict(int)
    for row in (
        LedgerEntry.objects.filter(bucket=LedgerBucket.ALLOWANCE)
        .values("tenant_id", "window_start")
        .annotate(s=Sum("available_delta"))
    ):
        allowance[(row["tenant_id"], row["window_start"])] = int(row["s"] or 0)
    current = {}
    for acc in BillingAccount.objects.values("tenant_id", "window_start", "allowance_remaining"):
        current[acc["tenant_id"]] = acc["window_start"]
        if acc["allowance_remaining"] < 0:
            drift.append(f"tenant {acc['tenant_id']}: allowance counter is negative ({acc['allowance_remaining']})")
        if acc["window_start"] is not None:
            derived = allowance.get((acc["tenant_id"], acc["window_start"]), 0)
            if derived != acc["allowance_remaining"]:
                drift.append(
                    f"tenant {acc['tenant_id']}: allowance counter {acc['allowance_remaining']} "
                    f"!= ledger {derived} for window {acc['window_start'].isoformat()}"
                )
    granted = set(
        LedgerEntry.objects.filter(bucket=LedgerBucket.ALLOWANCE, kind=LedgerKind.GRANT).values_list(
            "tenant_id", "window_start"
        )
    )
    for tenant_id, window in current.items():
        if window is not None and (tenant_id, window) not in granted:
            drift.append(f"tenant {tenant_id}: open window {window.isoformat()} has no grant row")
    for (tenant_id, window), total in allowance.items():
        if window != current.get(tenant_id) and total != 0:
            drift.append(f"tenant {tenant_id}: closed window {window} nets to {total}, not 0")

    by_topup = {
        r["topup_id"]: int(r["s"] or 0)
        for r in LedgerEntry.objects.filter(topup__isnull=False).values("topup_id").annotate(s=Sum("available_delta"))
    }
    for t in TopUp.objects.values("id", "tenant_id", "tokens", "remaining"):
        if not (0 <= t["remaining"] <= t["tokens"]):
            drift.append(f"top-up {t['id']}: remaining {t['remaining']} outside 0..{t['tokens']}")
        if by_topup.get(t["id"], 0) != t["remaining"]:
            drift.append(f"top-up {t['id']}: remaining {t['remaining']} != ledger {by_topup.get(t['id'], 0)}")

    held = {
        r["tenant_id"]: int(r["s"] or 0) for r in LedgerEntry.objects.values("tenant_id").annotate(s=Sum("held_delta"))
    }
    open_tokens = {
        r["tenant_id"]: int(r["s"] or 0)
        for r in TokenReservation.objects.filter(status=ReservationStatus.OPEN)
        .values("tenant_id")
        .annotate(s=Sum("tokens"))
    }
    for tenant_id in set(held) | set(open_tokens):
        if held.get(tenant_id, 0) != open_tokens.get(tenant_id, 0):
            drift.append(
                f"tenant {tenant_id}: ledger holds {held.get(tenant_id, 0)} tokens, "
                f"open reservations {open_tokens.get(tenant_id, 0)}"
            )

    per_res: dict[int, dict[str, tuple[int, int]]] = defaultdict(dict)
    for r in (
        LedgerEntry.objects.filter(
            reservation__isnull=False, kind__in=[LedgerKind.RESERVE, LedgerKind.SETTLE, LedgerKind.RELEASE]
        )
        .values("reservation_id", "kind")
        .annotate(held=Sum("held_delta"), n=Count("id"))
    ):
        per_res[r["reservation_id"]][r["kind"]] = (int(r["held"] or 0), r["n"])
    settled_tokens = 0
    for res in TokenReservation.objects.values(
        "id", "tokens", "status", "from_allowance", "from_topups", "from_overage"
    ).iterator(chunk_size=5000):
        rows = per_res.get(res["id"], {})
        parts = res["from_allowance"] + res["from_overage"] + sum(n for _, n in res["from_topups"])
        if parts != res["tokens"]:
            drift.append(f"reservation {res['id']}: sources add to {parts}, not {res['tokens']}")
        if rows.get(LedgerKind.RESERVE, (0, 0))[0] != res["tokens"]:
            drift.append(f"reservation {res['id']}: reserve rows hold {rows.get(LedgerKind.RESERVE, (0, 0))[0]}")
        settle, release = rows.get(LedgerKind.SETTLE), rows.get(LedgerKind.RELEASE)
        if res["status"] == ReservationStatus.SETTLED:
            settled_tokens += res["tokens"]
            if settle != (-res["tokens"], 1) or release:
                drift.append(f"reservation {res['id']}: settled but ledger shows settle={settle} release={release}")
        elif res["status"] == ReservationStatus.RELEASED:
            if settle or release is None or release[0] != -res["tokens"]:
                drift.append(f"reservation {res['id']}: released but ledger shows settle={settle} release={release}")
        elif settle or release:
            drift.append(f"reservation {res['id']}: open but ledger shows settle={settle} release={release}")
    consumed = -(LedgerEntry.objects.filter(kind=LedgerKind.SETTLE).aggregate(s=Sum("held_delta"))["s"] or 0)
    if consumed != settled_tokens:
        drift.append(f"usage: settled reservations total {settled_tokens} tokens, ledger consumed {consumed}")
    return drift
