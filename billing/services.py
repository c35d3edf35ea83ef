"""Billing writes: tenants, keys, feature gates, reservations and the ledger (keyword-only, <entity>_<action>).

Lock order, everywhere: BillingAccount (the tenant's lock row) -> TopUp rows (by expiry, id)
-> TokenReservation. Every balance change is a LedgerEntry written in the same transaction
as the counter it moves.
"""

from __future__ import annotations

import datetime as dt
import math

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from billing.errors import (
    FeatureNotInPlan,
    InsufficientQuota,
    InvalidAmount,
    ReservationNotFound,
    ReservationNotOpen,
)
from billing.models import (
    ApiKey,
    BillingAccount,
    LedgerBucket,
    LedgerEntry,
    LedgerKind,
    Membership,
    MembershipRole,
    Plan,
    PlanChange,
    ReservationStatus,
    Tenant,
    TokenReservation,
    TopUp,
)
from billing.periods import allowance_window
from console.credentials import credential_generate, credential_matches, credential_prefix
from console.errors import Conflict, NotFound, VoxfleetError


class UnknownPlan(VoxfleetError):
    code = "unknown_plan"
    status = 400


def plan_get(*, code: str) -> Plan:
    try:
        return Plan.objects.get(code=code)
    except Plan.DoesNotExist:
        raise UnknownPlan(f"There is no plan {code!r}.") from None


@transaction.atomic
def tenant_create(*, name: str, plan: Plan, owner, time_zone: str = "UTC", billing_email: str = "") -> Tenant:
    tenant = Tenant(name=name, slug=slugify(name)[:64] or "tenant", plan=plan, time_zone=time_zone)
    tenant.billing_email = billing_email or getattr(owner, "email", "")
    tenant.full_clean()
    tenant.save()
    Membership.objects.create(tenant=tenant, user=owner, role=MembershipRole.OWNER)
    BillingAccount.objects.create(tenant=tenant)
    return tenant


def user_create(*, username: str, password: str, email: str = "", is_staff: bool = False):
    user = get_user_model()(username=username, email=email, is_staff=is_staff, is_superuser=is_staff)
    user.set_password(password)
    user.save()
    return user


def api_key_create(*, tenant: Tenant, name: str, created_by=None) -> tuple[ApiKey, str]:
    """Returns the stored key and its plaintext, which is never retrievable again."""
    cred = credential_generate("vf")
    key = ApiKey.objects.create(
        tenant=tenant, name=name, prefix=cred.prefix, secret_hash=cred.secret_hash, created_by=created_by
    )
    return key, cred.plaintext


def api_key_revoke(*, key: ApiKey) -> ApiKey:
    if key.revoked_at is None:
        ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        key.refresh_from_db()
    return key


def api_key_authenticate(*, plaintext: str) -> ApiKey:
    """The active key for a presented secret; raises NotFound (mapped to 401 by callers)."""
    prefix = credential_prefix(plaintext or "")
    key = ApiKey.objects.select_related("tenant", "tenant__plan").filter(prefix=prefix).first() if prefix else None
    if key is None or not key.is_active or not credential_matches(plaintext, key.secret_hash):
        raise NotFound("Invalid or revoked API key.", code="invalid_api_key")
    # Last-used is advisory: a plain UPDATE, no lock, so hot keys don't serialise on it.
    now = timezone.now()
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    key.last_used_at = now
    return key


# --- Feature gates -----------------------------------------------------------------------

PLAN_FEATURES = ("dialect", "emotion", "style", "topup", "dedicated_nodes")


def plan_feature_check(*, tenant: Tenant, language: str, features: set[str]) -> None:
    """Raise FeatureNotInPlan unless the tenant's plan allows ``language`` and every feature."""
    plan = tenant.plan
    if language and not plan.allows_language(language):
        raise FeatureNotInPlan(
            f"Language {language!r} is not included in the {plan.name} plan; upgrade to use it.",
            feature=f"language:{language}",
            plan=plan.code,
        )
    for feature in sorted(features or ()):
        if feature not in PLAN_FEATURES:
            raise VoxfleetError(f"Unknown plan feature {feature!r}.", code="unknown_feature")
        if not plan.allows_feature(feature):
            raise FeatureNotInPlan(
                f"{feature.replace('_', ' ').capitalize()} instructions are not included in the {plan.name} plan; "
                "upgrade to use them."
                if feature in ("dialect", "emotion", "style")
                else f"{feature.replace('_', ' ').capitalize()} is not included in the {plan.name} plan.",
                feature=feature,
                plan=plan.code,
            )


# --- The account lock and allowance windows ---------------------------------------------


def _account_lock(tenant_id: int) -> BillingAccount:
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


def _ledger(tenant_id: int, kind: str, bucket: str, **fields) -> LedgerEntry:
    return LedgerEntry(tenant_id=tenant_id, kind=kind, bucket=bucket, **fields)


def _window_close(account: BillingAccount, *, now: dt.datetime) -> list[LedgerEntry]:
    """Write off the closing window's leftover allowance so every closed window nets to zero."""
    rows = []
    if account.window_start is not None and account.allowance_remaining > 0:
        rows.append(
            _ledger(
                account.tenant_id,
                LedgerKind.EXPIRY,
                LedgerBucket.ALLOWANCE,
                available_delta=-account.allowance_remaining,
                window_start=account.window_start,
                idempotency_key=f"allowance-expiry:{account.tenant_id}:{account.window_start.isoformat()}",
                note="allowance window closed",
                created_at=now,
            )
        )
    account.allowance_remaining = 0
    return rows


def _window_open(account: BillingAccount, *, start: dt.datetime, end: dt.datetime, tokens: int, now, note: str):
    account.window_start, account.window_end = start, end
    account.allowance_tokens = account.allowance_remaining = tokens
    return _ledger(
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


def _window_ensure(account: BillingAccount, *, now: dt.datetime) -> bool:
    """Lazily roll the allowance window forward (and apply a due downgrade). Caller holds the lock."""
    if account.window_end is not None and account.window_start <= now < account.window_end:
        return False
    tenant = account.tenant
    rows = _window_close(account, now=now)
    if account.pending_plan_id and account.pending_plan_at and account.pending_plan_at <= now:
        _downgrade_apply(account, now=now)
    plan = tenant.plan
    start, end = allowance_window(period=plan.allowance_period, now=now, tz=tenant.tz)
    rows.append(_window_open(account, start=start, end=end, tokens=int(plan.allowance_tokens), now=now, note=plan.code))
    LedgerEntry.objects.bulk_create(rows)
    account.save(update_fields=["window_start", "window_end", "allowance_tokens", "allowance_remaining"])
    return True


def _downgrade_apply(account: BillingAccount, *, now: dt.datetime) -> None:
    tenant = account.tenant
    tenant.plan = account.pending_plan
    tenant.save(update_fields=["plan"])
    PlanChange.objects.filter(tenant_id=tenant.pk, applied_at__isnull=True, cancelled_at__isnull=True).filter(
        to_plan_id=account.pending_plan_id, kind="downgrade"
    ).update(applied_at=now)
    account.pending_plan = None
    account.pending_plan_at = None
    account.save(update_fields=["pending_plan", "pending_plan_at"])


def account_window_ensure(*, tenant: Tenant, now: dt.datetime | None = None) -> BillingAccount:
    """Open the tenant's current allowance window now (grants are otherwise made lazily on first use)."""
    with transaction.atomic():
        account = _account_lock(tenant.pk)
        _window_ensure(account, now=now or timezone.now())
        return account


def _topups_expire(account: BillingAccount, *, now: dt.datetime) -> int:
    """Write off top-ups past their expiry (caller holds the account lock). Returns tokens expired."""
    due = list(
        TopUp.objects.select_for_update()
        .filter(tenant_id=account.tenant_id, expires_at__lte=now, remaining__gt=0)
        .order_by("expires_at", "id")
    )
    rows = []
    for topup in due:
        rows.append(
            _ledger(
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


def topups_expire_due(*, tenant: Tenant, now: dt.datetime | None = None) -> int:
    """Expire the tenant's lapsed top-ups through ledger rows; idempotent. Returns tokens written off."""
    with transaction.atomic():
        account = _account_lock(tenant.pk)
        return _topups_expire(account, now=now or timezone.now())


# --- Reserve -> settle / release ---------------------------------------------------------


def _positive_tokens(tokens) -> int:
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens <= 0:
        raise InvalidAmount(f"Tokens must be a positive integer, got {tokens!r}.")
    return tokens


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
    tokens = _positive_tokens(tokens)
    if idempotency_key is not None and not (0 < len(idempotency_key) <= 128):
        raise VoxfleetError("Idempotency key must be 1-128 characters.", code="invalid_idempotency_key")
    now = now or timezone.now()
    with transaction.atomic():
        account = _account_lock(tenant.pk)
        if idempotency_key is not None:
            existing = TokenReservation.objects.filter(tenant_id=tenant.pk, idempotency_key=idempotency_key).first()
            if existing is not None:
                if existing.tokens != tokens:
                    raise Conflict(
                        f"Idempotency key {idempotency_key!r} was used for {existing.tokens} tokens, not {tokens}.",
                        code="idempotency_key_reused",
                    )
                return existing
        _window_ensure(account, now=now)
        plan = account.tenant.plan
        from_allowance = min(tokens, account.allowance_remaining)
        need = tokens - from_allowance
        rows: list[LedgerEntry] = []
        parts: list[tuple[TopUp, int]] = []
        if need > 0:
            # Slow path only: top-ups are touched when the allowance cannot cover the job.
            _topups_expire(account, now=now)
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
            reference=reference[:128],
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
                _ledger(
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
                _ledger(
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
                _ledger(
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
        reservation.node_name = node_name[:64]
        reservation.gpu_model = gpu_model[:64]
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
        account = _account_lock(tenant_id)
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
                _ledger(
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
                    _ledger(
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
                _ledger(
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
                    _ledger(
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
                _ledger(
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
