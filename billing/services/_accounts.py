"""Billing's private write helpers, shared by the quota, top-up, plan and invoice services.

Not public: other apps use the services re-exported by ``billing.services``. Every helper
here expects the caller to be inside ``transaction.atomic()``; those that take an
``account`` expect the caller to hold its lock (``account_lock``, always the first lock taken).
"""

from __future__ import annotations

import datetime as dt

from django.db import IntegrityError, transaction

from billing.choices import LedgerBucket, LedgerKind, PaymentStatus, PlanChangeKind
from billing.errors import InvalidAmount, TenantSuspended
from billing.models import BillingAccount, LedgerEntry, Payment, PlanChange, Tenant, TopUp
from billing.periods import allowance_window


def account_lock(tenant_id: int) -> BillingAccount:
    """Lock the tenant's account row (always the first lock taken); creates it on first use."""
    qs = BillingAccount.objects.select_for_update(of=("self",)).select_related("tenant", "tenant__plan")
    account = qs.filter(tenant_id=tenant_id).first()
    if account is None:
        try:
            with transaction.atomic():
                BillingAccount.objects.create(tenant_id=tenant_id)
        except IntegrityError:
            pass  # another transaction created it first; its row is what we lock
        account = qs.get(tenant_id=tenant_id)
    return account


def tenant_active_check(tenant_id: int, *, action: str) -> None:
    """Refuse ``action`` for a suspended tenant, read from the database (a caller's Tenant may be stale)."""
    if not Tenant.objects.filter(pk=tenant_id, is_active=True).exists():
        raise TenantSuspended(f"This organisation is suspended: it cannot {action}. Contact support.")


def payment_record(
    *, idempotency_key: str, tenant_id: int, provider, result, amount, currency: str, purpose: str, now: dt.datetime
) -> tuple[Payment, bool]:
    """The row for a charge ``provider`` accepted (``result``), and whether this call created it:
    a retry with the same ``idempotency_key`` finds the first row instead of paying twice."""
    return Payment.objects.get_or_create(
        idempotency_key=idempotency_key,
        defaults={
            "tenant_id": tenant_id,
            "provider": provider.name,
            "reference": result.reference[:128],
            "amount": amount,
            "currency": currency,
            "status": PaymentStatus.SUCCEEDED,
            "purpose": purpose,
            "created_at": now,
        },
    )


def ledger_row(tenant_id: int, kind: str, bucket: str, **fields) -> LedgerEntry:
    """An unsaved ledger row: callers bulk-create it in the transaction that moves its counter."""
    return LedgerEntry(tenant_id=tenant_id, kind=kind, bucket=bucket, **fields)


def window_close(account: BillingAccount, *, now: dt.datetime) -> list[LedgerEntry]:
    """Write off the closing window's leftover allowance so every closed window nets to zero."""
    rows = []
    if account.window_start is not None and account.allowance_remaining > 0:
        rows.append(
            ledger_row(
                account.tenant_id,
                LedgerKind.EXPIRY,
                LedgerBucket.ALLOWANCE,
                available_delta=-account.allowance_remaining,
                window_start=account.window_start,
                # No idempotency key: the account lock makes each close happen once, and an
                # upgrade can close two windows that share a start (Pro -> Enterprise mid-month).
                note="allowance window closed",
                created_at=now,
            )
        )
    account.allowance_remaining = 0
    return rows


def window_open(account: BillingAccount, *, start: dt.datetime, end: dt.datetime, tokens: int, now, note: str):
    account.window_start, account.window_end = start, end
    account.allowance_tokens = account.allowance_remaining = tokens
    return ledger_row(
        account.tenant_id,
        LedgerKind.GRANT,
        LedgerBucket.ALLOWANCE,
        available_delta=tokens,
        window_start=start,
        # One grant per tenant and window: a retried or concurrent opener cannot grant twice.
        idempotency_key=f"grant:{account.tenant_id}:{start.isoformat()}",
        note=note,
        created_at=now,
    )


def window_ensure(account: BillingAccount, *, now: dt.datetime) -> bool:
    """Lazily roll the allowance window forward (and apply a due downgrade). Caller holds the lock."""
    # Windows only move forward: a caller whose clock lags a just-opened window stays in it.
    if account.window_end is not None and now < account.window_end:
        return False
    tenant = account.tenant
    rows = window_close(account, now=now)
    if account.pending_plan_id and account.pending_plan_at and account.pending_plan_at <= now:
        downgrade_apply(account, now=now)
    plan = tenant.plan
    start, end = allowance_window(period=plan.allowance_period, now=now, tz=tenant.tz)
    rows.append(window_open(account, start=start, end=end, tokens=int(plan.allowance_tokens), now=now, note=plan.code))
    LedgerEntry.objects.bulk_create(rows)
    account.save(update_fields=["window_start", "window_end", "allowance_tokens", "allowance_remaining"])
    return True


def downgrade_apply(account: BillingAccount, *, now: dt.datetime) -> None:
    tenant = account.tenant
    tenant.plan = account.pending_plan
    tenant.save(update_fields=["plan"])
    PlanChange.objects.filter(
        tenant_id=tenant.pk,
        kind=PlanChangeKind.DOWNGRADE,
        to_plan_id=account.pending_plan_id,
        applied_at__isnull=True,
        cancelled_at__isnull=True,
    ).update(applied_at=account.pending_plan_at)
    account.pending_plan = None
    account.pending_plan_at = None
    account.save(update_fields=["pending_plan", "pending_plan_at"])


def topups_expire_locked(account: BillingAccount, *, now: dt.datetime) -> int:
    """Write off top-ups past their expiry (caller holds the account lock). Returns tokens expired."""
    due = list(
        TopUp.objects.select_for_update()
        .filter(tenant_id=account.tenant_id, expires_at__lte=now, remaining__gt=0)
        .order_by("expires_at", "id")
    )
    rows = []
    for topup in due:
        rows.append(
            ledger_row(
                account.tenant_id,
                LedgerKind.EXPIRY,
                LedgerBucket.TOPUP,
                available_delta=-topup.remaining,
                topup=topup,
                note="top-up expired",
                created_at=now,
            )
        )
        topup.remaining = 0
        topup.expired_at = now
        topup.save(update_fields=["remaining", "expired_at"])
    LedgerEntry.objects.bulk_create(rows)
    return sum(-r.available_delta for r in rows)


def positive_tokens(tokens) -> int:
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens <= 0:
        raise InvalidAmount(f"Tokens must be a positive integer, got {tokens!r}.")
    return tokens
