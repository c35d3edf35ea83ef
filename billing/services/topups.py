"""Top-ups: packs bought through the payment provider, staff grants, and expiry.

Top-ups are spent after the allowance, earliest expiry first (``billing.services.quota``);
every credit and write-off is a ledger row.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from billing.choices import LedgerBucket, LedgerKind
from billing.errors import PaymentFailed, TopUpExpired
from billing.models import LedgerEntry, Payment, Tenant, TopUp, TopUpPack
from billing.payments import payment_provider_get
from billing.services._accounts import (
    account_lock,
    payment_record,
    positive_tokens,
    tenant_active_check,
    topups_expire_locked,
)
from billing.services.plans import plan_feature_check
from console.errors import NotFound


def topups_expire_due(*, tenant: Tenant, now: dt.datetime | None = None) -> int:
    """Expire the tenant's lapsed top-ups through ledger rows; idempotent. Returns tokens written off."""
    with transaction.atomic():
        account = account_lock(tenant.pk)
        return topups_expire_locked(account, now=now or timezone.now())


def topups_expire_lapsed(*, now: dt.datetime | None = None) -> int:
    """Expire every tenant's lapsed top-ups (beat's job; they are also expired lazily on spend)."""
    now = now or timezone.now()
    return sum(
        topups_expire_due(tenant=t, now=now)
        for t in Tenant.objects.filter(topups__remaining__gt=0, topups__expires_at__lte=now).distinct()
    )


def _topup_add(
    account,
    *,
    tokens: int,
    expires_at,
    now,
    price=Decimal("0.00"),
    currency="USD",
    pack=None,
    payment=None,
    note: str = "",
) -> TopUp:
    topup = TopUp.objects.create(
        tenant_id=account.tenant_id,
        pack=pack,
        tokens=tokens,
        remaining=tokens,
        price=price,
        currency=currency,
        purchased_at=now,
        expires_at=expires_at,
        payment=payment,
    )
    LedgerEntry.objects.create(
        tenant_id=account.tenant_id,
        kind=LedgerKind.TOPUP,
        bucket=LedgerBucket.TOPUP,
        available_delta=tokens,
        topup=topup,
        idempotency_key=f"topup:{topup.pk}",
        note=note[:255],
        created_at=now,
    )
    return topup


def topup_grant(*, tenant: Tenant, tokens: int, expires_at: dt.datetime, note: str = "", now=None) -> TopUp:
    """Staff-granted top-up (goodwill, contract): no payment, same spending order and expiry."""
    tokens = positive_tokens(tokens)
    now = now or timezone.now()
    if expires_at <= now:
        raise TopUpExpired(f"A top-up expiring at {expires_at.isoformat()} would already be expired.")
    with transaction.atomic():
        account = account_lock(tenant.pk)
        return _topup_add(account, tokens=tokens, expires_at=expires_at, now=now, note=note or "granted")


def topup_purchase(
    *, tenant: Tenant, pack_code: str, idempotency_key: str | None = None, provider=None, now=None
) -> TopUp:
    """Buy a catalogue pack: charge through the provider, then credit the tokens (once per key)."""
    pack = TopUpPack.objects.filter(code=pack_code, is_active=True).first()
    if pack is None:
        raise NotFound(f"There is no top-up pack {pack_code!r}.", code="unknown_topup_pack")
    tenant_active_check(tenant.pk, action="buy top-ups")
    plan_feature_check(tenant=tenant, language="", features={"topup"})
    idempotency_key = idempotency_key or f"topup:{tenant.pk}:{uuid.uuid4().hex}"
    key = f"topup:{tenant.pk}:{idempotency_key}"[:160]
    previous = Payment.objects.filter(idempotency_key=key).first()
    if previous is not None:
        topup = TopUp.objects.filter(payment=previous).first()
        if topup is not None:
            return topup
    now = now or timezone.now()
    provider = provider or payment_provider_get()
    # The provider call is slow external I/O: made before the transaction, never inside the lock.
    result = provider.charge(
        tenant_id=tenant.pk, amount=pack.price, currency=pack.currency, description=pack.name, idempotency_key=key
    )
    if not result.ok:
        raise PaymentFailed(f"The payment for {pack.name} was declined: {result.message or 'no reason given'}.")
    with transaction.atomic():
        account = account_lock(tenant.pk)
        payment, created = payment_record(
            idempotency_key=key,
            tenant_id=tenant.pk,
            provider=provider,
            result=result,
            amount=pack.price,
            currency=pack.currency,
            purpose=f"top-up {pack.code}",
            now=now,
        )
        if not created:
            existing = TopUp.objects.filter(payment=payment).first()
            if existing is not None:
                return existing
        return _topup_add(
            account,
            tokens=pack.tokens,
            expires_at=now + dt.timedelta(days=pack.validity_days),
            now=now,
            price=pack.price,
            currency=pack.currency,
            pack=pack,
            payment=payment,
            note=pack.code,
        )
