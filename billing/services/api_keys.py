"""API keys: minted once (the plaintext is shown only then), authenticated by prefix + hash, revoked."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from django.db.models import Q
from django.utils import timezone

from billing.choices import API_KEY_SCOPES_ALL
from billing.models import ApiKey
from billing.services._accounts import tenant_active_check
from console.credentials import credential_generate, credential_matches, credential_prefix
from console.errors import NotFound, VoxfleetError

if TYPE_CHECKING:
    from billing.models import Tenant


def api_key_create(
    *,
    tenant: Tenant,
    name: str,
    created_by=None,
    scopes: list[str] | None = None,
    monthly_token_cap: int | None = None,
) -> tuple[ApiKey, str]:
    """Returns the stored key and its plaintext, which is never retrievable again (not for a
    suspended tenant). ``scopes`` default to all; ``monthly_token_cap`` None means no cap."""
    tenant_active_check(tenant.pk, action="create API keys")
    scopes = sorted(set(scopes)) if scopes is not None else list(API_KEY_SCOPES_ALL)
    if not scopes or set(scopes) - set(API_KEY_SCOPES_ALL):
        raise VoxfleetError(f"Scopes must be some of {', '.join(API_KEY_SCOPES_ALL)}.", code="invalid_scopes")
    if monthly_token_cap is not None and (
        isinstance(monthly_token_cap, bool) or not isinstance(monthly_token_cap, int) or monthly_token_cap <= 0
    ):
        raise VoxfleetError("A monthly token cap must be a positive whole number.", code="invalid_cap")
    cred = credential_generate("vf")
    key = ApiKey.objects.create(
        tenant=tenant,
        name=name,
        prefix=cred.prefix,
        secret_hash=cred.secret_hash,
        created_by=created_by,
        scopes=scopes,
        monthly_token_cap=monthly_token_cap,
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


def api_key_revoke_for_tenant(*, tenant: Tenant, key_id: int) -> ApiKey:
    """Revoke one of the tenant's keys; another tenant's key id is NotFound (no existence leak)."""
    key = ApiKey.objects.filter(pk=key_id, tenant_id=tenant.pk).first()
    if key is None:
        raise NotFound("There is no such API key.", code="api_key_not_found")
    return api_key_revoke(key=key)
