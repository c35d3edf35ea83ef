"""API keys: created and shown once, revoked; an outsider cannot touch them."""

from __future__ import annotations

import pytest

from billing.models import ApiKey
from billing.services import api_key_authenticate
from console.errors import NotFound


@pytest.mark.django_db
def test_create_key_shows_it_once(owner_client, owner_tenant):
    r = owner_client.post("/keys/", {"name": "prod", "scopes": ["synthesize", "usage:read", "voices:manage"]})
    body = r.content.decode()
    key = ApiKey.objects.get(tenant=owner_tenant, name="prod")
    start = body.index('id="new-key">') + len('id="new-key">')
    plaintext = body[start : body.index("<", start)]
    assert plaintext.startswith(key.prefix)
    assert api_key_authenticate(plaintext=plaintext).pk == key.pk
    # The list never shows it again.
    assert plaintext not in owner_client.get("/keys/").content.decode()


@pytest.mark.django_db
def test_revoke_key(owner_client, owner_tenant):
    key = ApiKey.objects.get(tenant=owner_tenant, name="test")
    r = owner_client.post(f"/keys/{key.pk}/revoke/")
    assert r.status_code == 302
    with pytest.raises(NotFound):
        api_key_authenticate(plaintext=owner_tenant.test_api_key)


@pytest.mark.django_db
def test_outsider_cannot_revoke_or_see_keys(outsider_client, owner_tenant):
    key = ApiKey.objects.get(tenant=owner_tenant, name="test")
    assert outsider_client.post(f"/keys/{key.pk}/revoke/").status_code == 404
    assert key.prefix not in outsider_client.get("/keys/").content.decode()
    key.refresh_from_db()
    assert key.is_active


@pytest.mark.django_db
def test_anonymous_is_sent_to_login(client):
    r = client.get("/keys/")
    assert r.status_code == 302 and "/accounts/login/" in r["Location"]
