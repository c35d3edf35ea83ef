"""API key reads: a tenant's keys (never their secrets, which are not stored)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from billing.models import ApiKey

if TYPE_CHECKING:
    from billing.models import Tenant


def api_key_list_for_tenant(*, tenant: Tenant) -> list[ApiKey]:
    """The tenant's keys, revoked ones included, newest first, with who created them."""
    return list(ApiKey.objects.filter(tenant_id=tenant.pk).select_related("created_by").order_by("-created_at"))
