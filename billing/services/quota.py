"""Quota writes: the allowance window, reserve -> settle / release, and staff ledger adjustments.

Lock order, everywhere: BillingAccount (the tenant's lock row) -> TopUp rows (by expiry, id)
-> TokenReservation. Every balance change is a LedgerEntry written in the same transaction
as the counter it moves.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.utils import timezone

from billing import fastpath
from billing.choices import LedgerBucket, LedgerKind, ReservationStatus
from billing.errors import InsufficientQuota, InvalidAmount, ReservationNotFound, ReservationNotOpen
from billing.models import BillingAccount, LedgerEntry, TokenReservation, TopUp
from billing.services._accounts import (
    account_lock,
    ledger_row,
    positive_tokens,
    topups_expire_locked,
    window_ensure,
)
from console.errors import Conflict, VoxfleetError

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
) -> TokenReservation:
    """Hold ``tokens`` for one job: the allowance first, then top-ups by earliest expiry, then
    overage if the plan prices it; otherwise InsufficientQuota and nothing is written.
    The same ``idempotency_key`` for the same tenant returns the first reservation."""
    tokens = positive_tokens(tokens)
    if idempotency_key is not None and not (0 < len(idempotency_key) <= 128):
        raise VoxfleetError("Idempotency key must be 1-128 characters.", code="invalid_idempotency_key")
    now = now or timezone.now()
    reference = reference[:128]
    if idempotency_key is not None:
        existing = _reservation_by_key(tenant.pk, idempotency_key, tokens)
        if existing is not None:
            return existing
    if fastpath.available():
        try:
            reservation = fastpath.reserve_from_allowance(
                tenant_id=tenant.pk, tokens=tokens, key=idempotency_key, reference=reference, now=now
            )
        except IntegrityError:
            # The same idempotency key committed between our check and our insert.
            reservation = _reservation_by_key(tenant.pk, idempotency_key, tokens)
            if reservation is None:
                raise
        if reservation is not None:
            return reservation
    with transaction.atomic():
        account = account_lock(tenant.pk)
        if idempotency_key is not None:
            # Again under the lock: a concurrent request with the same key may have won.
            existing = _reservation_by_key(tenant.pk, idempotency_key, tokens)
            if existing is not None:
                return existing
        window_ensure(account, now=now)
        plan = account.tenant.plan
        from_allowance = min(tokens, account.allowance_remaining)
        need = tokens - from_allowance
        rows: list[LedgerEntry] = []
        parts: list[tuple[TopUp, int]] = []
        if need > 0:
            # Slow path only: top-ups are touched when the allowance cannot cover the job.
            topups_expire_locked(account, now=now)
            for topup in (
                TopUp.objects.select_for_update()
                .filter(tenant_id=tenant.pk, remaining__gt=0, expires_at__gt=now)
                .order_by("expires_at", "id")
            ):
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
        )
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
        return reservation


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
