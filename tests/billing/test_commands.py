"""manage.py billing_reconcile exit codes."""

import io

import pytest
from django.core.management import call_command

from billing.models import BillingAccount
from billing.services import reservation_create, reservation_settle


def test_reconcile_passes_on_clean_books(make_tenant):
    tenant = make_tenant("free")
    r = reservation_create(tenant=tenant, tokens=10)
    reservation_settle(reservation_id=r.pk)
    out = io.StringIO()
    call_command("billing_reconcile", stdout=out)
    assert "agree" in out.getvalue()


def test_reconcile_exits_nonzero_on_drift(make_tenant):
    tenant = make_tenant("free")
    reservation_create(tenant=tenant, tokens=10)
    BillingAccount.objects.filter(tenant=tenant).update(allowance_remaining=500)
    err = io.StringIO()
    with pytest.raises(SystemExit) as exc:
        call_command("billing_reconcile", stderr=err)
    assert exc.value.code == 1
    assert "DRIFT tenant" in err.getvalue() and "allowance counter 500 != ledger 490" in err.getvalue()


def test_reconcile_flags_a_window_without_grant(make_tenant):
    import datetime as dt

    from billing.reconcile import ledger_drift_find

    tenant = make_tenant("free")
    BillingAccount.objects.filter(tenant=tenant).update(
        window_start=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), window_end=dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    )
    assert any("has no grant row" in line for line in ledger_drift_find())
