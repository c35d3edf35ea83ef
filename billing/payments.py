"""The payment-provider edge: one small interface, and the offline "manual" provider.

No payment network is reachable from Voxfleet's machines, so the default provider records
charges collected outside the system (bank transfer, card terminal, contract invoice) and
always accepts. A real provider (Stripe, Adyen...) implements ``PaymentProvider`` and is
selected with ``settings.BILLING_PAYMENT_PROVIDER`` (a dotted path).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string


@dataclass(frozen=True)
class ChargeResult:
    """The provider's answer to one charge."""

    ok: bool
    reference: str
    message: str = ""


class PaymentProvider(Protocol):
    name: str

    def charge(
        self, *, tenant_id: int, amount: Decimal, currency: str, description: str, idempotency_key: str
    ) -> ChargeResult: ...


class ManualProvider:
    """Offline provider: the money is collected outside Voxfleet; the charge is recorded as made."""

    name = "manual"

    def charge(
        self, *, tenant_id: int, amount: Decimal, currency: str, description: str, idempotency_key: str
    ) -> ChargeResult:
        return ChargeResult(ok=True, reference=f"manual:{idempotency_key}")


def payment_provider_get() -> PaymentProvider:
    return import_string(settings.BILLING_PAYMENT_PROVIDER)()
