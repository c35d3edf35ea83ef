"""Top-up pack purchase through the payment-provider edge."""

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.errors import FeatureNotInPlan, PaymentFailed
from billing.models import LedgerEntry, LedgerKind, Payment, TopUp
from billing.payments import ChargeResult, ManualProvider
from billing.reconcile import ledger_drift_find
from billing.selectors import quota_get
from billing.services import reservation_create, topup_purchase
from console.errors import NotFound


class DecliningProvider:
    """Test double at the external edge: a card network that says no."""

    name = "declining"

    def __init__(self):
        self.calls = 0

    def charge(self, **kwargs):
        self.calls += 1
        return ChargeResult(ok=False, reference="", message="card expired")


class CountingProvider(ManualProvider):
    def __init__(self):
        self.calls = []

    def charge(self, **kwargs):
        self.calls.append(kwargs)
        return super().charge(**kwargs)


def test_purchase_credits_tokens_with_expiry_and_a_ledger_row(make_tenant):
    tenant = make_tenant("pro")
    now = timezone.now()
    provider = CountingProvider()
    topup = topup_purchase(tenant=tenant, pack_code="topup-10k", provider=provider, now=now)
    assert (topup.tokens, topup.remaining, topup.price) == (10_000, 10_000, Decimal("3.00"))
    assert topup.expires_at == now + dt.timedelta(days=365)
    assert provider.calls[0]["amount"] == Decimal("3.00") and provider.calls[0]["currency"] == "USD"
    payment = Payment.objects.get()
    assert (payment.provider, payment.status, payment.amount) == ("manual", "succeeded", Decimal("3.00"))
    assert LedgerEntry.objects.get(kind=LedgerKind.TOPUP).available_delta == 10_000
    assert quota_get(tenant=tenant).topup_remaining == 10_000
    # Spent only after the allowance.
    r = reservation_create(tenant=tenant, tokens=100_500)
    assert r.from_allowance == 100_000 and r.from_topups == [[topup.pk, 500]]
    assert ledger_drift_find() == []


def test_purchase_is_idempotent_per_key(make_tenant):
    tenant = make_tenant("pro")
    provider = CountingProvider()
    a = topup_purchase(tenant=tenant, pack_code="topup-10k", idempotency_key="k1", provider=provider)
    b = topup_purchase(tenant=tenant, pack_code="topup-10k", idempotency_key="k1", provider=provider)
    assert a.pk == b.pk and TopUp.objects.count() == 1 and len(provider.calls) == 1


def test_declined_payment_changes_nothing(make_tenant):
    tenant = make_tenant("pro")
    provider = DecliningProvider()
    with pytest.raises(PaymentFailed) as exc:
        topup_purchase(tenant=tenant, pack_code="topup-10k", provider=provider)
    assert exc.value.status == 402 and "card expired" in exc.value.message
    assert provider.calls == 1
    assert TopUp.objects.count() == 0 and Payment.objects.count() == 0
    assert not LedgerEntry.objects.filter(kind=LedgerKind.TOPUP).exists()


def test_free_plan_cannot_buy_topups(make_tenant):
    tenant = make_tenant("free")
    with pytest.raises(FeatureNotInPlan):
        topup_purchase(tenant=tenant, pack_code="topup-10k", provider=CountingProvider())
    assert TopUp.objects.count() == 0


def test_unknown_or_inactive_pack(make_tenant):
    from billing.models import TopUpPack

    tenant = make_tenant("pro")
    with pytest.raises(NotFound):
        topup_purchase(tenant=tenant, pack_code="topup-free-money")
    TopUpPack.objects.filter(code="topup-100k").update(is_active=False)
    with pytest.raises(NotFound):
        topup_purchase(tenant=tenant, pack_code="topup-100k")
    assert TopUp.objects.count() == 0


def test_default_provider_is_manual(settings):
    from billing.payments import payment_provider_get

    assert isinstance(payment_provider_get(), ManualProvider)
    settings.BILLING_PAYMENT_PROVIDER = "tests.billing.test_services_topups.DecliningProvider"
    assert isinstance(payment_provider_get(), DecliningProvider)
