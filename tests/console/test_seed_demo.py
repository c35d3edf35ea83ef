import json
from io import StringIO

import pytest
from django.core.management import call_command

from billing.models import ApiKey, Tenant
from billing.services import api_key_authenticate
from console.errors import NotFound
from fleetagent.services import node_authenticate


def _seed() -> dict:
    out = StringIO()
    call_command("seed_demo", "--json", stdout=out)
    return json.loads(out.getvalue())


def test_seed_demo_json_shape_and_secrets_work(db, client):
    data = _seed()
    assert set(data) == {"admin", "tenants", "nodes"}
    assert set(data["admin"]) == {"username", "password"}
    assert sorted(t["plan"] for t in data["tenants"]) == ["Enterprise", "Free", "Pro"]
    for t in data["tenants"]:
        assert set(t) == {"name", "plan", "username", "password", "api_key"}
        assert api_key_authenticate(plaintext=t["api_key"]).tenant.name == t["name"]
        assert client.login(username=t["username"], password=t["password"])
    assert client.login(**data["admin"])
    [node] = data["nodes"]
    assert node_authenticate(token=node["token"]).name == node["name"]
    # Secrets are stored hashed, never in plaintext.
    assert not ApiKey.objects.filter(secret_hash__contains=data["tenants"][0]["api_key"]).exists()


def test_seed_demo_is_idempotent_and_rotates_secrets(db):
    first = _seed()
    second = _seed()
    assert Tenant.objects.count() == 3
    assert [t["name"] for t in first["tenants"]] == [t["name"] for t in second["tenants"]]
    old_key = first["tenants"][0]["api_key"]
    assert old_key != second["tenants"][0]["api_key"]
    assert ApiKey.objects.filter(revoked_at__isnull=True).count() == 3
    with pytest.raises(NotFound):
        api_key_authenticate(plaintext=old_key)
    with pytest.raises(NotFound):
        node_authenticate(token=first["nodes"][0]["token"])
