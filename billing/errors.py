"""Billing's business errors: each is a VoxfleetError with a stable code and HTTP status."""

from __future__ import annotations

from console.errors import Conflict, NotFound, PermissionDenied, VoxfleetError


class FeatureNotInPlan(VoxfleetError):
    code = "feature_not_in_plan"
    status = 403


class InsufficientQuota(VoxfleetError):
    code = "insufficient_quota"
    status = 429
    openai_type = "insufficient_quota"


class RateLimited(VoxfleetError):
    """Too many requests or concurrent jobs; ``headers["Retry-After"]`` says when to retry."""

    code = "rate_limit_exceeded"
    status = 429
    openai_type = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: int, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = max(1, int(retry_after))
        self.headers["Retry-After"] = str(self.retry_after)


class ReservationNotFound(NotFound):
    code = "reservation_not_found"


class ReservationNotOpen(Conflict):
    code = "reservation_not_open"


class InvalidAmount(VoxfleetError):
    code = "invalid_amount"
    status = 400


class TopUpExpired(VoxfleetError):
    code = "topup_expired"
    status = 400


class InvoiceImmutable(Conflict):
    code = "invoice_immutable"


class UnknownPlan(VoxfleetError):
    code = "unknown_plan"
    status = 400


class InvalidPlanChange(VoxfleetError):
    code = "invalid_plan_change"
    status = 400


class PaymentFailed(VoxfleetError):
    code = "payment_failed"
    status = 402


class LedgerImmutable(Conflict):
    code = "ledger_immutable"


class TenantSuspended(PermissionDenied):
    """A suspended tenant (``is_active=False``) may read and pay, not buy, mint keys or change plan."""

    code = "tenant_inactive"


class InvitationInvalid(VoxfleetError):
    """An invitation link that is unknown, used, withdrawn or expired."""

    code = "invitation_invalid"
    status = 400


class ApiKeyCapReached(VoxfleetError):
    """The API key's monthly token cap would be passed (the tenant's quota may still have room)."""

    code = "api_key_cap_reached"
    status = 429
    openai_type = "insufficient_quota"


class ApiKeyScopeMissing(PermissionDenied):
    """The API key was not given the scope this request needs."""

    code = "api_key_scope_missing"
