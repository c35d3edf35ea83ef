import pytest
from channels.layers import channel_layers


@pytest.mark.django_db
def test_healthz_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] and body["checks"]["channel_layer"]["ok"]


class _BrokenLayer:
    async def new_channel(self, prefix="specific."):
        raise ConnectionError("layer down")


@pytest.mark.django_db
def test_healthz_names_the_failing_part(client, monkeypatch):
    monkeypatch.setitem(channel_layers.backends, "default", _BrokenLayer())
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["channel_layer"]
    assert "layer down" in body["checks"]["channel_layer"]["error"]
    assert body["checks"]["database"]["ok"]


def test_admin_shows_login(client, db):
    response = client.get("/admin/", follow=True)
    assert response.status_code == 200
    assert b"Log in" in response.content
