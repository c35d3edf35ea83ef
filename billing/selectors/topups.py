"""Top-up reads: the pack catalogue and a tenant's purchases."""

from __future__ import annotations

from typing import TYPE_CHECKING

from billing.models import TopUp, TopUpPack

if TYPE_CHECKING:
    from billing.models import Tenant


def topup_pack_list_active() -> list[TopUpPack]:
    """The packs on sale, smallest first."""
    return list(TopUpPack.objects.filter(is_active=True).order_by("tokens"))


def topup_list_for_tenant(*, tenant: Tenant, limit: int = 20) -> list[TopUp]:
    """The tenant's most recent top-ups, newest first."""
    return list(TopUp.objects.filter(tenant_id=tenant.pk).order_by("-purchased_at")[:limit])
