"""Quota writes: the allowance window, reserve -> settle / release, and staff ledger adjustments.

Lock order, everywhere: BillingAccount (the tenant's lock row) -> TopUp rows (by expiry, id)
-> TokenReservation. Every balance change is a LedgerEntry written in the same transaction
as the counter it moves.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from billing import fastpath
from billing.choices import ALERT_DEFAULT_PERCENTS, LedgerBucket, LedgerKind, ReservationStatus
from billing.errors import ApiKeyCapReached, InsufficientQuota, InvalidAmount, ReservationNotFound, ReservationNotOpen
from billing.models import ApiKey, BillingAccount, LedgerEntry, TokenReservation, TopUp
from billing.periods import billing_month_window
from billing.services._accounts import (
    account_lock,
    ledger_row,
    positive_tokens,
    topups_expire_locked,
    window_ensure,
)
from billing.services.alerts import usage_alerts_after_reserve
from console.errors import Conflict, VoxfleetError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from billing.models import Tenant


def account_window_ensure(*, tenant: Tenant, now: dt.datetime | None = None) -> BillingAccount:
    """Open the tenant's current allowance window now (grants are otherwise made lazily on first use)."""
    with transaction.atomic():
        account = account_lock(tenant.pk)
        window_ensure(account, now=now or timezone.now())
        return account


def _reservation_by_key(tenant_id: int, key: str, tokens: int) -> TokenReservation | None:
    existing = TokenReservation.objects.filter(tenant_id=tenant_id, idempotency_key=key).first()
    if existing is not None and existing.tokens != tokens:
        raise Conflict(
            f"Idempotency key {key!r} was used for {existing.tokens} tokens, not {tokens}.",
            code="idempotency_key_reused",
        )
    return existing


def reservation_create(
    *,
    tenant: Tenant,
    tokens: int,
    idempotency_key: str | None = None,
    reference: str = "",
    now: dt.datetime | None = None,
    api_key: ApiKey | None = None,
) -> TokenReservation:
    """Hold ``tokens`` for one job: the allowance first, then top-ups by earliest expiry, then
    overage if the plan prices it; otherwise InsufficientQuota and nothing is written.
    The same ``idempotency_key`` for the same tenant returns the first reservation.

    ``api_key``: the key the request came with; if it carries a monthly token cap, the
    tokens count against it in the same transaction (ApiKeyCapReached, 429, past the cap).
    Usage alerts the reservation crosses fire after it (``billing.services.alerts``)."""
    capped = api_key is not None and api_key.monthly_token_cap is not None
    if not capped:
        return _reservation_create(
            tenant=tenant, tokens=tokens, idempotency_key=idempotency_key, reference=reference, now=now
        )
    with transaction.atomic():
        reservation = _reservation_create(
            tenant=tenant, tokens=tokens, idempotency_key=idempotency_key, reference=reference, now=now, api_key=api_key
        )
        if reservation.api_key_id == api_key.pk and not getattr(reservation, "_existing", False):
            _api_key_cap_take(api_key=api_key, tenant=tenant, tokens=reservation.tokens, now=now or timezone.now())
        return reservation


def _cap_month(tenant: Tenant, now: dt.datetime) -> dt.date:
    return billing_month_window(now=now, tz=tenant.tz)[0].date()


def _api_key_cap_take(*, api_key: ApiKey, tenant: Tenant, tokens: int, now: dt.datetime) -> None:
    """Count ``tokens`` against the key's monthly cap: one conditional UPDATE (the month rolls
    over in it); none changed means the cap would be passed. Locked after the account (lock order)."""
    month = _cap_month(tenant, now)
    current = Case(When(cap_month=month, then=F("cap_month_tokens")), default=Value(0))
    changed = (
        ApiKey.objects.filter(pk=api_key.pk, monthly_token_cap__isnull=False)
        .annotate(current=current)
        .filter(current__lte=F("monthly_token_cap") - tokens)
        .update(cap_month=month, cap_month_tokens=current + tokens)
    )
    if changed != 1:
        used = ApiKey.objects.filter(pk=api_key.pk).values_list("cap_month", "cap_month_tokens").first()
        spent = used[1] if used and used[0] == month else 0
        raise ApiKeyCapReached(
            f"API key {api_key.prefix}… may use {api_key.monthly_token_cap:,} tokens a month and has used {spent:,}; "
            f"this request needs {tokens:,}. Raise its cap or use another key.",
            cap=api_key.monthly_token_cap,
            used=spent,
            needed=tokens,
        )


def _reservation_create(
    *,
    tenant: Tenant,
    tokens: int,
    idempotency_key: str | None = None,
    reference: str = "",
    now: dt.datetime | None = None,
    api_key: ApiKey | None = None,
) -> TokenReservation:
    tokens = positive_tokens(tokens)
    api_key_id = api_key.pk if api_key is not None else None
    if idempotency_key is not None and not (0 < len(idempotency_key) <= 128):
        raise VoxfleetError("Idempotency key must be 1-128 characters.", code="invalid_idempotency_key")
    now = now or timezone.now()
    reference = reference[:128]
    if idempotency_key is not None:
        existing = _reservation_by_key(tenant.pk, idempotency_key, tokens)
        if existing is not None:
            existing._existing = True
            return existing
    if fastpath.available():
        try:
            outcome = fastpath.reserve_from_allowance(
                tenant_id=tenant.pk,
                tokens=tokens,
                key=idempotency_key,
                reference=reference,
                now=now,
                api_key_id=api_key_id,
            )
        except IntegrityError:
            # The same idempotency key committed between our check and our insert.
            reservation = _reservation_by_key(tenant.pk, idempotency_key, tokens)
            if reservation is None:
                raise
            reservation._existing = True
            return reservation
        if outcome is not None:
            reservation, remaining, allowance, percents = outcome
            _alerts_quietly(
                tenant_id=tenant.pk,
                period_start=reservation.window_start,
                allowance_tokens=allowance,
                remaining_before=remaining + tokens,
                remaining_after=remaining,
                percents=ALERT_DEFAULT_PERCENTS if percents is None else percents,
                now=now,
            )
            return reservation
    with transaction.atomic():
        account = account_lock(tenant.pk)
        if idempotency_key is not None:
            # Again under the lock: a concurrent request with the same key may have won.
            existing = _reservation_by_key(tenant.pk, idempotency_key, tokens)
            if existing is not None:
                existing._existing = True
                return existing
        window_ensure(account, now=now)
        plan = account.tenant.plan
        from_allowance = min(tokens, account.allowance_remaining)
        need = tokens - from_allowance
        rows: list[LedgerEntry] = []
        parts: list[tuple[TopUp, int]] = []
        topup_before = None
        if need > 0:
            # Slow path only: top-ups are touched when the allowance cannot cover the job.
            topups_expire_locked(account, now=now)
            live = list(
                TopUp.objects.select_for_update()
                .filter(tenant_id=tenant.pk, remaining__gt=0, expires_at__gt=now)
                .order_by("expires_at", "id")
            )
            topup_before = sum(t.remaining for t in live)
            for topup in live:
                take = min(need, topup.remaining)
                parts.append((topup, take))
                need -= take
                if need == 0:
                    break
        from_overage = 0
        if need > 0:
            if plan.overage_price_per_1k is None:
                available = from_allowance + sum(take for _, take in parts)
                raise InsufficientQuota(
                    f"This request needs {tokens} tokens but only {available} remain "
                    f"(allowance resets {account.window_end.isoformat()}); buy a top-up or upgrade the plan.",
                    needed=tokens,
                    remaining=available,
                )
            from_overage = need
        reservation = TokenReservation.objects.create(
            tenant_id=tenant.pk,
            tokens=tokens,
            idempotency_key=idempotency_key,
            reference=reference,
            window_start=account.window_start,
            from_allowance=from_allowance,
            from_topups=[[t.pk, take] for t, take in parts],
            from_overage=from_overage,
            created_at=now,
            api_key_id=api_key_id,
        )
        remaining_before = account.allowance_remaining
        if from_allowance:
            account.allowance_remaining -= from_allowance
            account.save(update_fields=["allowance_remaining"])
            rows.append(
                ledger_row(
                    tenant.pk,
                    LedgerKind.RESERVE,
                    LedgerBucket.ALLOWANCE,
                    available_delta=-from_allowance,
                    held_delta=from_allowance,
                    window_start=account.window_start,
                    reservation=reservation,
                    created_at=now,
                )
            )
        for topup, take in parts:
            topup.remaining -= take
            topup.save(update_fields=["remaining"])
            rows.append(
                ledger_row(
                    tenant.pk,
                    LedgerKind.RESERVE,
                    LedgerBucket.TOPUP,
                    available_delta=-take,
                    held_delta=take,
                    topup=topup,
                    reservation=reservation,
                    created_at=now,
                )
            )
        if from_overage:
            rows.append(
                ledger_row(
                    tenant.pk,
                    LedgerKind.RESERVE,
                    LedgerBucket.OVERAGE,
                    held_delta=from_overage,
                    reservation=reservation,
                    created_at=now,
                )
            )
        LedgerEntry.objects.bulk_create(rows)
        taken = sum(take for _, take in parts)
        alert_args = {
            "tenant_id": tenant.pk,
            "period_start": account.window_start,
            "allowance_tokens": int(account.allowance_tokens),
            "remaining_before": remaining_before,
            "remaining_after": account.allowance_remaining,
            "topup_before": topup_before if taken else None,
            "topup_after": (topup_before - taken) if taken else None,
            "now": now,
        }
    # After the reservation's own block, in the caller's transaction if any (a job refused later rolls its alert back).
    _alerts_quietly(**alert_args)
    return reservation


def _alerts_quietly(**kwargs) -> None:
    """Fire the usage alerts a reservation crossed; an alert problem never refuses the job."""
    try:
        usage_alerts_after_reserve(**kwargs)
    except Exception:  # noqa: BLE001 - logged; the reservation stands
        log.exception("usage alerts after a reservation failed (tenant %s)", kwargs.get("tenant_id"))


def reservation_settle(
    *,
    reservation_id: int,
    gpu_seconds: float = 0.0,
    node_name: str = "",
    gpu_model: str = "",
    now: dt.datetime | None = None,
) -> TokenReservation:
    """Consume an open reservation and record its usage; settling twice raises ReservationNotOpen."""
    try:
        gpu_seconds = float(gpu_seconds)
    except (TypeError, ValueError):
        raise InvalidAmount(f"GPU-seconds must be a number, got {gpu_seconds!r}.") from None
    if not math.isfinite(gpu_seconds) or gpu_seconds < 0:
        raise InvalidAmount(f"GPU-seconds must be zero or more, got {gpu_seconds!r}.")
    now = now or timezone.now()
    node_name, gpu_model = node_name[:64], gpu_model[:64]
    if fastpath.available():
        settled = fastpath.settle(
            reservation_id=reservation_id, gpu_seconds=gpu_seconds, node_name=node_name, gpu_model=gpu_model, now=now
        )
        if settled is not None:
            return settled
        status = TokenReservation.objects.filter(pk=reservation_id).values_list("status", flat=True).first()
        if status is None:
            raise ReservationNotFound(f"There is no reservation {reservation_id}.")
        raise ReservationNotOpen(f"Reservation {reservation_id} is already {status}.")
    with transaction.atomic():
        # Only the reservation row is locked: settling moves no spendable balance, so it
        # never needs the account lock (and keeps the lock order: account -> reservation).
        reservation = TokenReservation.objects.select_for_update().filter(pk=reservation_id).first()
        if reservation is None:
            raise ReservationNotFound(f"There is no reservation {reservation_id}.")
        if reservation.status != ReservationStatus.OPEN:
            raise ReservationNotOpen(f"Reservation {reservation_id} is already {reservation.status}.")
        reservation.status = ReservationStatus.SETTLED
        reservation.settled_at = now
        reservation.gpu_seconds = gpu_seconds
        reservation.node_name = node_name
        reservation.gpu_model = gpu_model
        reservation.save(update_fields=["status", "settled_at", "gpu_seconds", "node_name", "gpu_model"])
        LedgerEntry.objects.create(
            tenant_id=reservation.tenant_id,
            kind=LedgerKind.SETTLE,
            bucket=LedgerBucket.HELD,
            held_delta=-reservation.tokens,
            reservation=reservation,
            idempotency_key=f"settle:{reservation.pk}",
            created_at=now,
        )
        return reservation


def reservation_release(*, reservation_id: int, reason: str, now: dt.datetime | None = None) -> TokenReservation:
    """Return an open reservation's tokens to where they came from (failed, cancelled, timed out)."""
    now = now or timezone.now()
    with transaction.atomic():
        # Peek (unlocked) for the tenant and top-ups, then lock in the fixed order.
        peek = TokenReservation.objects.filter(pk=reservation_id).values_list("tenant_id", "from_topups").first()
        if peek is None:
            raise ReservationNotFound(f"There is no reservation {reservation_id}.")
        tenant_id, parts = peek
        account = account_lock(tenant_id)
        topup_ids = [tid for tid, _ in parts]
        topups = {
            t.pk: t for t in TopUp.objects.select_for_update().filter(pk__in=topup_ids).order_by("expires_at", "id")
        }
        reservation = TokenReservation.objects.select_for_update().get(pk=reservation_id)
        if reservation.status != ReservationStatus.OPEN:
            raise ReservationNotOpen(f"Reservation {reservation_id} is already {reservation.status}.")
        rows: list[LedgerEntry] = []
        key = f"release:{reservation.pk}"
        if reservation.from_allowance:
            a = reservation.from_allowance
            rows.append(
                ledger_row(
                    tenant_id,
                    LedgerKind.RELEASE,
                    LedgerBucket.ALLOWANCE,
                    available_delta=a,
                    held_delta=-a,
                    window_start=reservation.window_start,
                    reservation=reservation,
                    idempotency_key=key,
                    created_at=now,
                )
            )
            if reservation.window_start == account.window_start:
                account.allowance_remaining += a
                account.save(update_fields=["allowance_remaining"])
            else:
                # That window has closed: the tokens come back to it and lapse with it.
                rows.append(
                    ledger_row(
                        tenant_id,
                        LedgerKind.EXPIRY,
                        LedgerBucket.ALLOWANCE,
                        available_delta=-a,
                        window_start=reservation.window_start,
                        reservation=reservation,
                        note="released into a closed window",
                        created_at=now,
                    )
                )
        for topup_id, take in reservation.from_topups:
            topup = topups[topup_id]
            rows.append(
                ledger_row(
                    tenant_id,
                    LedgerKind.RELEASE,
                    LedgerBucket.TOPUP,
                    available_delta=take,
                    held_delta=-take,
                    topup=topup,
                    reservation=reservation,
                    created_at=now,
                )
            )
            if topup.expires_at <= now:
                rows.append(
                    ledger_row(
                        tenant_id,
                        LedgerKind.EXPIRY,
                        LedgerBucket.TOPUP,
                        available_delta=-take,
                        topup=topup,
                        reservation=reservation,
                        note="released into an expired top-up",
                        created_at=now,
                    )
                )
                if topup.expired_at is None:
                    topup.expired_at = now
                    topup.save(update_fields=["expired_at"])
            else:
                topup.remaining += take
                topup.save(update_fields=["remaining"])
        if reservation.from_overage:
            rows.append(
                ledger_row(
                    tenant_id,
                    LedgerKind.RELEASE,
                    LedgerBucket.OVERAGE,
                    held_delta=-reservation.from_overage,
                    reservation=reservation,
                    created_at=now,
                )
            )
        if rows and rows[0].idempotency_key is None:
            rows[0].idempotency_key = key
        reservation.status = ReservationStatus.RELEASED
        reservation.released_at = now
        reservation.release_reason = (reason or "released")[:64]
        reservation.save(update_fields=["status", "released_at", "release_reason"])
        LedgerEntry.objects.bulk_create(rows)
        if reservation.api_key_id:
            # A failed or cancelled job costs the key's monthly cap nothing either (lock order:
            # account -> top-ups -> reservation -> key).
            month = _cap_month(account.tenant, reservation.created_at)
            ApiKey.objects.filter(
                pk=reservation.api_key_id, cap_month=month, cap_month_tokens__gte=reservation.tokens
            ).update(cap_month_tokens=F("cap_month_tokens") - reservation.tokens)
        return reservation


def ledger_adjust(*, tenant: Tenant, tokens: int, note: str, created_by=None, now=None) -> LedgerEntry:
    """Staff correction of the open window's allowance (positive credits, negative debits)."""
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens == 0:
        raise InvalidAmount(f"An adjustment must be a non-zero whole number of tokens, got {tokens!r}.")
    if not note.strip():
        raise VoxfleetError("An adjustment needs a note saying why.", code="note_required")
    now = now or timezone.now()
    with transaction.atomic():
        account = account_lock(tenant.pk)
        window_ensure(account, now=now)
        if account.allowance_remaining + tokens < 0:
            raise InvalidAmount(
                f"Cannot debit {-tokens} tokens: only {account.allowance_remaining} remain in this window."
            )
        account.allowance_remaining += tokens
        account.save(update_fields=["allowance_remaining"])
        return LedgerEntry.objects.create(
            tenant_id=tenant.pk,
            kind=LedgerKind.ADJUSTMENT,
            bucket=LedgerBucket.ALLOWANCE,
            available_delta=tokens,
            window_start=account.window_start,
            note=note[:255],
            created_by=created_by,
            created_at=now,
        )
