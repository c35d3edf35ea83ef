"""API keys: shown once, stored hashed, last-used time, revocable; another tenant's key is not found."""

import pytest

from billing.models import ApiKey
from billing.services import api_key_authenticate, api_key_create, api_key_revoke_for_tenant
from console.errors import NotFound


def test_key_lifecycle(make_tenant):
    tenant = make_tenant("pro")
    key, plaintext = api_key_create(tenant=tenant, name="ci")
    stored = ApiKey.objects.get(pk=key.pk)
    assert plaintext.startswith("vf_") and plaintext not in (stored.secret_hash, stored.prefix)
    assert stored.last_used_at is None
    assert api_key_authenticate(plaintext=plaintext).pk == key.pk
    assert ApiKey.objects.get(pk=key.pk).last_used_at is not None
    revoked = api_key_revoke_for_tenant(tenant=tenant, key_id=key.pk)
    assert revoked.revoked_at is not None
    with pytest.raises(NotFound):
        api_key_authenticate(plaintext=plaintext)


def test_outsider_cannot_revoke_another_tenants_key(make_tenant):
    owner, outsider = make_tenant("pro"), make_tenant("pro")
    key, plaintext = api_key_create(tenant=owner, name="prod")
    with pytest.raises(NotFound):
        api_key_revoke_for_tenant(tenant=outsider, key_id=key.pk)
    assert ApiKey.objects.get(pk=key.pk).revoked_at is None
    assert api_key_authenticate(plaintext=plaintext).pk == key.pk


@pytest.mark.parametrize("bad", ["", "vf_", "nonsense", "vf_deadbeef_wrongsecret"])
def test_bad_keys_are_refused(db, bad):
    with pytest.raises(NotFound):
        api_key_authenticate(plaintext=bad)


def test_last_used_is_refreshed_at_most_once_a_minute(make_tenant):
    import datetime as dt

    from django.utils import timezone

    tenant = make_tenant("pro")
    key, plaintext = api_key_create(tenant=tenant, name="busy")
    api_key_authenticate(plaintext=plaintext)
    first = ApiKey.objects.get(pk=key.pk).last_used_at
    api_key_authenticate(plaintext=plaintext)
    assert ApiKey.objects.get(pk=key.pk).last_used_at == first  # no write within the minute
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now() - dt.timedelta(minutes=2))
    api_key_authenticate(plaintext=plaintext)
    assert ApiKey.objects.get(pk=key.pk).last_used_at > first - dt.timedelta(seconds=1)
    assert ApiKey.objects.get(pk=key.pk).last_used_at > timezone.now() - dt.timedelta(seconds=30)
