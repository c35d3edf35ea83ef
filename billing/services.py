"""Billing writes: tenants, keys, feature gates, reservations and the ledger (keyword-only, <entity>_<action>).

Lock order, everywhere: BillingAccount (the tenant's lock row) -> TopUp rows (by expiry, id)
-> TokenReservation. Every balance change is a LedgerEntry written in the same transaction
as the counter it moves.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q, Sum
from django.utils import timezone
from django.utils.text import slugify

from billing import fastpath
from billing.errors import (
    FeatureNotInPlan,
    InsufficientQuota,
    InvalidAmount,
    InvalidPlanChange,
    InvoiceImmutable,
    PaymentFailed,
    ReservationNotFound,
    ReservationNotOpen,
    TopUpExpired,
)
from billing.models import (
    AllowancePeriod,
    ApiKey,
    BillingAccount,
    CustomFee,
    Invoice,
    InvoiceLine,
    InvoiceLineKind,
    InvoiceStatus,
    LedgerBucket,
    LedgerEntry,
    LedgerKind,
    Membership,
    MembershipRole,
    Payment,
    PaymentStatus,
    Plan,
    PlanChange,
    PlanChangeKind,
    ReservationStatus,
    Tenant,
    TokenReservation,
    TopUp,
    TopUpPack,
)
from billing.payments import payment_provider_get
from billing.periods import allowance_window, billing_month_window, month_bounds
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


def membership_add(*, tenant: Tenant, user, role: str = MembershipRole.MEMBER) -> Membership:
    """Seat ``user`` in ``tenant``; Conflict if they already have a seat there."""
    membership, created = Membership.objects.get_or_create(tenant=tenant, user=user, defaults={"role": role})
    if not created:
        raise Conflict(f"{user} is already a member of {tenant.name}.", code="already_member")
    return membership


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


API_KEY_LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


def api_key_authenticate(*, plaintext: str) -> ApiKey:
    """The active key for a presented secret; raises NotFound (mapped to 401 by callers)."""
    prefix = credential_prefix(plaintext or "")
    key = ApiKey.objects.select_related("tenant", "tenant__plan").filter(prefix=prefix).first() if prefix else None
    if key is None or not key.is_active or not credential_matches(plaintext, key.secret_hash):
        raise NotFound("Invalid or revoked API key.", code="invalid_api_key")
    # Last-used is advisory, to the minute: a busy key would otherwise pay a commit on every
    # request. The conditional UPDATE (no lock) lets one request per minute refresh it.
    now = timezone.now()
    stale = now - API_KEY_LAST_USED_RESOLUTION
    if key.last_used_at is None or key.last_used_at < stale:
        ApiKey.objects.filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale), pk=key.pk).update(
            last_used_at=now
        )
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
                # No idempotency key: the account lock makes each close happen once, and an
                # upgrade can close two windows that share a start (Pro -> Enterprise mid-month).
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
    # Windows only move forward: a caller whose clock lags a just-opened window stays in it.
    if account.window_end is not None and now < account.window_end:
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
    tokens = _positive_tokens(tokens)
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


# --- Adjustments and top-ups -------------------------------------------------------------


def ledger_adjust(*, tenant: Tenant, tokens: int, note: str, created_by=None, now=None) -> LedgerEntry:
    """Staff correction of the open window's allowance (positive credits, negative debits)."""
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens == 0:
        raise InvalidAmount(f"An adjustment must be a non-zero whole number of tokens, got {tokens!r}.")
    if not note.strip():
        raise VoxfleetError("An adjustment needs a note saying why.", code="note_required")
    now = now or timezone.now()
    with transaction.atomic():
        account = _account_lock(tenant.pk)
        _window_ensure(account, now=now)
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
    tokens = _positive_tokens(tokens)
    now = now or timezone.now()
    if expires_at <= now:
        raise TopUpExpired(f"A top-up expiring at {expires_at.isoformat()} would already be expired.")
    with transaction.atomic():
        account = _account_lock(tenant.pk)
        return _topup_add(account, tokens=tokens, expires_at=expires_at, now=now, note=note or "granted")


def topup_purchase(
    *, tenant: Tenant, pack_code: str, idempotency_key: str | None = None, provider=None, now=None
) -> TopUp:
    """Buy a catalogue pack: charge through the provider, then credit the tokens (once per key)."""
    pack = TopUpPack.objects.filter(code=pack_code, is_active=True).first()
    if pack is None:
        raise NotFound(f"There is no top-up pack {pack_code!r}.", code="unknown_topup_pack")
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
        account = _account_lock(tenant.pk)
        payment, created = Payment.objects.get_or_create(
            idempotency_key=key,
            defaults={
                "tenant_id": tenant.pk,
                "provider": provider.name,
                "reference": result.reference[:128],
                "amount": pack.price,
                "currency": pack.currency,
                "status": PaymentStatus.SUCCEEDED,
                "purpose": f"top-up {pack.code}",
                "created_at": now,
            },
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


# --- Plan changes ------------------------------------------------------------------------

_CENT = Decimal("0.01")


def _is_upgrade(old: Plan, new: Plan) -> bool:
    return (new.monthly_price, new.allowance_tokens) > (old.monthly_price, old.allowance_tokens)


def plan_change(
    *, tenant: Tenant, plan_code: str, now: dt.datetime | None = None, by_staff: bool = False
) -> PlanChange:
    """Upgrade at once (prorated charge and allowance for the rest of the month) or schedule a
    downgrade for the end of the billing month. Asking for the current plan cancels a pending downgrade.
    Plans not offered publicly (Enterprise: a contract) are only assigned by staff."""
    new_plan = plan_get(code=plan_code)
    if not new_plan.is_public and not by_staff and new_plan.pk != tenant.plan_id:
        raise InvalidPlanChange(f"The {new_plan.name} plan is arranged by contract; contact sales to move to it.")
    now = now or timezone.now()
    with transaction.atomic():
        account = _account_lock(tenant.pk)
        _window_ensure(account, now=now)
        tenant = account.tenant
        old_plan = tenant.plan
        pending = PlanChange.objects.filter(
            tenant_id=tenant.pk, kind=PlanChangeKind.DOWNGRADE, applied_at__isnull=True, cancelled_at__isnull=True
        )
        if new_plan.pk == old_plan.pk:
            change = pending.first()
            if change is None:
                raise InvalidPlanChange(f"{tenant.name} is already on the {old_plan.name} plan.")
            pending.update(cancelled_at=now)
            account.pending_plan, account.pending_plan_at = None, None
            account.save(update_fields=["pending_plan", "pending_plan_at"])
            change.refresh_from_db()
            return change
        month_start, month_end = billing_month_window(now=now, tz=tenant.tz)
        if not _is_upgrade(old_plan, new_plan):
            pending.update(cancelled_at=now)
            account.pending_plan, account.pending_plan_at = new_plan, month_end
            account.save(update_fields=["pending_plan", "pending_plan_at"])
            return PlanChange.objects.create(
                tenant=tenant,
                from_plan=old_plan,
                to_plan=new_plan,
                kind=PlanChangeKind.DOWNGRADE,
                requested_at=now,
                effective_at=month_end,
                currency=new_plan.currency,
            )
        if new_plan.currency != old_plan.currency and old_plan.monthly_price:
            raise InvalidPlanChange("Changing to a plan billed in another currency needs staff help.")
        # Proration: the price difference for the rest of the billing month, rounded once to cents.
        fraction = Decimal((month_end - now).total_seconds()) / Decimal((month_end - month_start).total_seconds())
        amount = ((new_plan.monthly_price - old_plan.monthly_price) * fraction).quantize(_CENT, ROUND_HALF_UP)
        monthly = (AllowancePeriod.MONTH, AllowancePeriod.CONTRACT)
        if new_plan.allowance_period in monthly and old_plan.allowance_period in monthly:
            extra = max(0, new_plan.allowance_tokens - old_plan.allowance_tokens)
            tokens = account.allowance_remaining + int(extra * fraction)
        elif new_plan.allowance_period in monthly:
            tokens = int(new_plan.allowance_tokens * fraction)
        else:
            tokens = int(new_plan.allowance_tokens)
        start, end = allowance_window(period=new_plan.allowance_period, now=now, tz=tenant.tz)
        pending.update(cancelled_at=now)
        change = PlanChange.objects.create(
            tenant=tenant,
            from_plan=old_plan,
            to_plan=new_plan,
            kind=PlanChangeKind.UPGRADE,
            requested_at=now,
            effective_at=now,
            applied_at=now,
            prorated_amount=amount,
            currency=new_plan.currency,
            prorated_tokens=tokens,
        )
        rows = _window_close(account, now=now)
        grant = _window_open(account, start=start, end=end, tokens=tokens, now=now, note=f"upgrade to {new_plan.code}")
        grant.idempotency_key = f"upgrade-grant:{change.pk}"
        LedgerEntry.objects.bulk_create([*rows, grant])
        account.pending_plan, account.pending_plan_at = None, None
        account.save()
        tenant.plan = new_plan
        tenant.save(update_fields=["plan"])
        return change


# --- Invoices ----------------------------------------------------------------------------
#
# Money is rounded once: each line's amount = quantity x unit price, rounded half-up to
# cents. The invoice total is the sum of those rounded amounts.


def _plan_at(tenant: Tenant, when: dt.datetime) -> Plan:
    """The plan in effect at ``when``, replayed from applied plan changes."""
    before = (
        PlanChange.objects.filter(tenant_id=tenant.pk, applied_at__isnull=False, applied_at__lte=when)
        .select_related("to_plan")
        .order_by("-applied_at", "-id")
        .first()
    )
    if before is not None:
        return before.to_plan
    after = (
        PlanChange.objects.filter(tenant_id=tenant.pk, applied_at__isnull=False, applied_at__gt=when)
        .select_related("from_plan")
        .order_by("applied_at", "id")
        .first()
    )
    return after.from_plan if after is not None else tenant.plan


def _line(kind: str, description: str, quantity, unit_price) -> dict:
    quantity, unit_price = Decimal(quantity), Decimal(unit_price)
    amount = (quantity * unit_price).quantize(_CENT, ROUND_HALF_UP)
    return {"kind": kind, "description": description, "quantity": quantity, "unit_price": unit_price, "amount": amount}


def invoice_lines_compute(*, tenant: Tenant, period_start: dt.date) -> tuple[str, list[dict]]:
    """The currency and line items a tenant owes for the calendar month starting ``period_start``
    (in its time zone). Read-only: used by invoices and by the revenue selectors."""
    first, next_first = month_bounds(period_start)
    tz = tenant.tz
    start = dt.datetime.combine(first, dt.time(0), tzinfo=tz)
    end = dt.datetime.combine(next_first, dt.time(0), tzinfo=tz)
    plan = _plan_at(tenant, start)
    currency = plan.currency
    lines = []
    if plan.monthly_price > 0:
        lines.append(_line(InvoiceLineKind.SUBSCRIPTION, f"{plan.name} plan, {first:%B %Y}", 1, plan.monthly_price))
    for change in PlanChange.objects.filter(
        tenant_id=tenant.pk, kind=PlanChangeKind.UPGRADE, applied_at__gte=start, applied_at__lt=end
    ).select_related("from_plan", "to_plan"):
        if change.prorated_amount:
            lines.append(
                _line(
                    InvoiceLineKind.PRORATION,
                    f"Upgrade {change.from_plan.name} -> {change.to_plan.name} on {change.applied_at.astimezone(tz):%Y-%m-%d}, prorated",
                    1,
                    change.prorated_amount,
                )
            )
    for topup in TopUp.objects.filter(
        tenant_id=tenant.pk, purchased_at__gte=start, purchased_at__lt=end, price__gt=0
    ).select_related("pack"):
        name = topup.pack.name if topup.pack else f"{topup.tokens} tokens"
        lines.append(_line(InvoiceLineKind.TOPUP, f"Top-up pack {name}", 1, topup.price))
    settled = TokenReservation.objects.filter(
        tenant_id=tenant.pk, status=ReservationStatus.SETTLED, settled_at__gte=start, settled_at__lt=end
    )
    overage = settled.aggregate(s=Sum("from_overage"))["s"] or 0
    if overage and plan.overage_price_per_1k:
        lines.append(
            _line(
                InvoiceLineKind.OVERAGE,
                f"Overage: {overage:,} tokens past allowance and top-ups",
                Decimal(overage) / 1000,
                plan.overage_price_per_1k,
            )
        )
    dedicated = list(tenant.dedicated_nodes.values_list("name", flat=True))
    if dedicated:
        account = BillingAccount.objects.filter(tenant_id=tenant.pk).first()
        rate = (account.gpu_rental_price_per_hour if account else None) or plan.gpu_rental_price_per_hour
        seconds = settled.filter(node_name__in=dedicated).aggregate(s=Sum("gpu_seconds"))["s"] or 0.0
        hours = (Decimal(str(seconds)) / 3600).quantize(Decimal("0.0001"), ROUND_HALF_UP)
        if hours > 0 and rate > 0:
            lines.append(
                _line(
                    InvoiceLineKind.GPU_RENTAL,
                    f"Dedicated GPU rental ({', '.join(sorted(dedicated))}): {hours} GPU-hours",
                    hours,
                    rate,
                )
            )
    for fee in CustomFee.objects.filter(tenant_id=tenant.pk, period_month__gte=first, period_month__lt=next_first):
        if fee.currency != currency:
            raise VoxfleetError(
                f"Custom fee {fee.description!r} is in {fee.currency}, the invoice in {currency}.",
                code="currency_mismatch",
            )
        lines.append(_line(InvoiceLineKind.CUSTOM, fee.description, 1, fee.amount))
    return currency, lines


def _invoice_number(tenant: Tenant, period_start: dt.date) -> str:
    return f"VF-{period_start:%Y%m}-{tenant.pk:06d}"


def invoice_draft_build(*, tenant: Tenant, period_start: dt.date) -> Invoice:
    """Create or refresh the draft invoice for a month; a finalized one is returned untouched."""
    first, next_first = month_bounds(period_start)
    with transaction.atomic():
        _account_lock(tenant.pk)  # serialises concurrent closers of the same tenant
        invoice = Invoice.objects.select_for_update().filter(tenant_id=tenant.pk, period_start=first).first()
        if invoice is not None and invoice.status != InvoiceStatus.DRAFT:
            return invoice
        currency, lines = invoice_lines_compute(tenant=tenant, period_start=first)
        if invoice is None:
            invoice = Invoice.objects.create(
                tenant=tenant,
                number=_invoice_number(tenant, first),
                period_start=first,
                period_end=next_first,
                currency=currency,
            )
        else:
            invoice.lines.all().delete()
        InvoiceLine.objects.bulk_create(
            [InvoiceLine(invoice=invoice, position=i, **line) for i, line in enumerate(lines)]
        )
        invoice.currency = currency
        invoice.total = sum((line["amount"] for line in lines), Decimal("0.00"))
        invoice.save(update_fields=["currency", "total"])
        return invoice


def _invoice_lock(invoice_id: int) -> Invoice:
    invoice = Invoice.objects.select_for_update().filter(pk=invoice_id).first()
    if invoice is None:
        raise NotFound(f"There is no invoice {invoice_id}.", code="invoice_not_found")
    return invoice


def invoice_finalize(*, invoice_id: int, now=None) -> Invoice:
    """draft -> finalized: lines and amounts are frozen from here on."""
    with transaction.atomic():
        invoice = _invoice_lock(invoice_id)
        if invoice.status != InvoiceStatus.DRAFT:
            raise InvoiceImmutable(f"Invoice {invoice.number} is already {invoice.status}.")
        invoice.status = InvoiceStatus.FINALIZED
        invoice.finalized_at = now or timezone.now()
        invoice.save(update_fields=["status", "finalized_at"])
        return invoice


def invoice_mark_paid(*, invoice_id: int, provider=None, now=None) -> Invoice:
    """finalized -> paid, charging the total through the payment provider (nothing to charge: no call)."""
    with transaction.atomic():
        invoice = _invoice_lock(invoice_id)
        if invoice.status != InvoiceStatus.FINALIZED:
            raise Conflict(
                f"Only a finalized invoice can be paid; {invoice.number} is {invoice.status}.",
                code="invalid_invoice_state",
            )
    payment = None
    if invoice.total > 0:
        provider = provider or payment_provider_get()
        key = f"invoice:{invoice.pk}"
        result = provider.charge(
            tenant_id=invoice.tenant_id,
            amount=invoice.total,
            currency=invoice.currency,
            description=f"Invoice {invoice.number}",
            idempotency_key=key,
        )
        if not result.ok:
            raise PaymentFailed(f"The payment for invoice {invoice.number} was declined: {result.message}.")
    now = now or timezone.now()
    with transaction.atomic():
        invoice = _invoice_lock(invoice_id)
        if invoice.status != InvoiceStatus.FINALIZED:
            raise InvoiceImmutable(f"Invoice {invoice.number} is already {invoice.status}.")
        if invoice.total > 0:
            payment, _ = Payment.objects.get_or_create(
                idempotency_key=f"invoice:{invoice.pk}",
                defaults={
                    "tenant_id": invoice.tenant_id,
                    "provider": provider.name,
                    "reference": result.reference[:128],
                    "amount": invoice.total,
                    "currency": invoice.currency,
                    "status": PaymentStatus.SUCCEEDED,
                    "purpose": f"invoice {invoice.number}",
                    "created_at": now,
                },
            )
        invoice.status = InvoiceStatus.PAID
        invoice.paid_at = now
        invoice.payment = payment
        invoice.save(update_fields=["status", "paid_at", "payment"])
        return invoice


def invoice_void(*, invoice_id: int, reason: str, now=None) -> Invoice:
    """draft or finalized -> void (kept for the record; a paid invoice is refunded, not voided)."""
    if not reason.strip():
        raise VoxfleetError("Voiding an invoice needs a reason.", code="reason_required")
    with transaction.atomic():
        invoice = _invoice_lock(invoice_id)
        if invoice.status not in (InvoiceStatus.DRAFT, InvoiceStatus.FINALIZED):
            raise InvoiceImmutable(f"Invoice {invoice.number} is {invoice.status} and cannot be voided.")
        invoice.status = InvoiceStatus.VOID
        invoice.voided_at = now or timezone.now()
        invoice.void_reason = reason[:255]
        invoice.save(update_fields=["status", "voided_at", "void_reason"])
        return invoice


def custom_fee_add(*, tenant: Tenant, description: str, amount, period_month: dt.date, currency: str = "") -> CustomFee:
    """A one-off fee for a month; refused once that month's invoice is finalized."""
    try:
        amount = Decimal(str(amount))
    except InvalidOperation:
        raise InvalidAmount(f"A fee must be a decimal amount, got {amount!r}.") from None
    if not amount.is_finite() or amount <= 0:
        raise InvalidAmount(f"A fee must be a positive amount, got {amount}.")
    if not description.strip():
        raise VoxfleetError("A fee needs a description.", code="description_required")
    first, _ = month_bounds(period_month)
    with transaction.atomic():
        _account_lock(tenant.pk)
        invoice = Invoice.objects.filter(tenant_id=tenant.pk, period_start=first).first()
        if invoice is not None and invoice.status != InvoiceStatus.DRAFT:
            raise InvoiceImmutable(f"Invoice {invoice.number} for {first:%B %Y} is {invoice.status}; bill it later.")
        return CustomFee.objects.create(
            tenant=tenant,
            description=description[:255],
            amount=amount.quantize(_CENT, ROUND_HALF_UP),
            currency=currency or tenant.plan.currency,
            period_month=first,
        )


def billing_period_close(*, period_start: dt.date, finalize: bool = True, now=None, progress=None) -> dict:
    """Build (and finalize) every active tenant's invoice for a month that has ended in its time zone.

    Idempotent: tenants whose invoice is already finalized are skipped, drafts are rebuilt.
    Due downgrades are applied first. ``progress`` is an optional callable per tenant (CLI bar).
    """
    first, next_first = month_bounds(period_start)
    now = now or timezone.now()
    counts = {"finalized": 0, "drafted": 0, "skipped": 0, "not_over": 0}
    for tenant in Tenant.objects.filter(is_active=True).select_related("plan").order_by("pk"):
        if now < dt.datetime.combine(next_first, dt.time(0), tzinfo=tenant.tz):
            counts["not_over"] += 1
        else:
            account_window_ensure(tenant=tenant, now=now)
            invoice = invoice_draft_build(tenant=tenant, period_start=first)
            if invoice.status != InvoiceStatus.DRAFT:
                counts["skipped"] += 1
            elif finalize:
                invoice_finalize(invoice_id=invoice.pk, now=now)
                counts["finalized"] += 1
            else:
                counts["drafted"] += 1
        if progress is not None:
            progress(tenant)
    return counts


# --- API keys ----------------------------------------------------------------------------


def api_key_revoke_for_tenant(*, tenant: Tenant, key_id: int) -> ApiKey:
    """Revoke one of the tenant's keys; another tenant's key id is NotFound (no existence leak)."""
    key = ApiKey.objects.filter(pk=key_id, tenant_id=tenant.pk).first()
    if key is None:
        raise NotFound("There is no such API key.", code="api_key_not_found")
    return api_key_revoke(key=key)
