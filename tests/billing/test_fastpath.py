"""The PostgreSQL hot path: one statement per reserve and per settle, same rows as the general path."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing import fastpath
from billing.models import LedgerEntry, LedgerKind, ReservationStatus, TokenReservation
from billing.reconcile import ledger_drift_find
from billing.services import account_window_ensure, reservation_create, reservation_settle


def _statements(ctx):
    return [q["sql"] for q in ctx.captured_queries if "SAVEPOINT" not in q["sql"]]


@pytest.fixture
def pg_only():
    if not fastpath.available():
        pytest.skip("the one-statement hot path is PostgreSQL-only (SQLite has no data-modifying CTEs)")


def test_reserve_and_settle_are_one_statement_each(pg_only, make_tenant):
    tenant = make_tenant("pro")
    account_window_ensure(tenant=tenant)
    with CaptureQueriesContext(connection) as reserve_ctx:
        r = reservation_create(tenant=tenant, tokens=77, reference="job:9")
    with CaptureQueriesContext(connection) as settle_ctx:
        settled = reservation_settle(reservation_id=r.pk, gpu_seconds=1.25, node_name="gpu-1", gpu_model="A10")
    assert len(_statements(reserve_ctx)) == 1 and len(_statements(settle_ctx)) == 1
    stored = TokenReservation.objects.get(pk=r.pk)
    assert (stored.tokens, stored.from_allowance, stored.reference, stored.window_start) == (
        77,
        77,
        "job:9",
        r.window_start,
    )
    assert settled.status == stored.status == ReservationStatus.SETTLED
    assert (settled.gpu_seconds, settled.node_name, settled.gpu_model) == (1.25, "gpu-1", "A10")
    kinds = sorted(LedgerEntry.objects.filter(reservation=r).values_list("kind", "available_delta", "held_delta"))
    assert kinds == [(LedgerKind.RESERVE, -77, 77), (LedgerKind.SETTLE, 0, -77)]
    assert ledger_drift_find() == []


def test_fast_path_refuses_to_go_below_zero_and_falls_back(pg_only, make_tenant):
    from billing.errors import InsufficientQuota

    tenant = make_tenant("free")
    account_window_ensure(tenant=tenant)
    reservation_create(tenant=tenant, tokens=499)
    with pytest.raises(InsufficientQuota):
        reservation_create(tenant=tenant, tokens=2)
    reservation_create(tenant=tenant, tokens=1)
    assert ledger_drift_find() == []
