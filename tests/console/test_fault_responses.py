"""While the database is down every request gets an error in the API's shape, never an HTML page."""

from __future__ import annotations

import pytest
from django.db import OperationalError
from django.test import Client


@pytest.fixture
def database_down(monkeypatch):
    """API-key authentication (the first database read of an API request) fails as during a restart."""

    def refuse(self, request):
        raise OperationalError("terminating connection due to administrator command")

    monkeypatch.setattr("billing.api_auth.ApiKeyAuthentication.authenticate", refuse)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/v1/audio/speech", {"model": "cosyvoice-3", "input": "hi", "voice": "alloy"}),
        ("get", "/v1/models", None),
        ("get", "/api/v1/jobs", None),
    ],
)
def test_a_database_fault_is_a_json_503_with_retry_after(database_down, method, path, body):
    client = Client(raise_request_exception=False)
    kwargs = {"data": body, "content_type": "application/json"} if body else {}
    response = getattr(client, method)(path, HTTP_AUTHORIZATION="Bearer vfk_x_y", **kwargs)
    assert response.status_code == 503, response.content[:200]
    assert response["Content-Type"].startswith("application/json")
    assert response["Retry-After"] == "5"
    error = response.json()["error"]
    assert error["code"] == "service_unavailable" and "nothing was charged" in error["message"]
    if path.startswith("/v1/"):
        assert error["type"] == "server_error"  # OpenAI's shape under /v1


@pytest.mark.django_db
def test_a_crash_in_an_api_view_is_json_500(monkeypatch):
    def crash(self, request):
        raise RuntimeError("boom")

    monkeypatch.setattr("billing.api_auth.ApiKeyAuthentication.authenticate", crash)
    response = Client(raise_request_exception=False).get("/api/v1/jobs", HTTP_AUTHORIZATION="Bearer vfk_x_y")
    assert response.status_code == 500 and response.json()["error"]["code"] == "server_error"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
async def test_with_debug_on_and_under_asgi_a_database_fault_is_a_json_503_too(database_down, settings):
    # With DEBUG (every development setup) Django renders its HTML debug page instead of
    # calling handler500: the fault middleware answers first.
    from django.test import AsyncClient

    settings.DEBUG = True
    client = AsyncClient(raise_request_exception=False)
    response = await client.get("/api/v1/jobs", headers={"Authorization": "Bearer vfk_x_y"})
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert response.json()["error"]["code"] == "service_unavailable"


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [False, True])
def test_a_redis_fault_is_a_json_503_with_retry_after_too(monkeypatch, settings, debug):
    # Found under load (tests/faults): Redis restarting under a speech request gave Django's
    # debug page (DEBUG) or a JSON 500, not the 503 a client can retry on.
    import redis

    def refuse(self, request):
        raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr("billing.api_auth.ApiKeyAuthentication.authenticate", refuse)
    settings.DEBUG = debug
    response = Client(raise_request_exception=False).post(
        "/v1/audio/speech",
        {"model": "cosyvoice-3", "input": "hi", "voice": "alloy"},
        content_type="application/json",
        HTTP_AUTHORIZATION="Bearer vfk_x_y",
    )
    assert response.status_code == 503, response.content[:200]
    assert response["Content-Type"].startswith("application/json") and response["Retry-After"] == "5"
    error = response.json()["error"]
    assert error["type"] == "server_error" and "Redis" in error["message"]


@pytest.mark.django_db
def test_a_database_fault_in_the_ops_api_is_a_json_503_too(staff_client, monkeypatch):
    def down(**_kwargs):
        raise OperationalError("database table is locked: fleetagent_nodeaction")

    monkeypatch.setattr("console.ops.views.node_action_find", down)
    response = staff_client.get("/ops/api/actions/1/")
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == "service_unavailable"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # the speech view reads on its own threads
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/audio/speech", {"model": "cosyvoice-3", "input": "你好", "voice": "zh-female"}),
        ("/api/v1/jobs", {"input": "你好", "voice": "zh-female"}),
    ],
)
def test_with_no_node_online_a_request_is_a_503_that_says_when_to_retry(make_tenant, fleet_routing, path, body):
    # Found under load (tests/faults): right after a console restart, before the agent is back.
    tenant = make_tenant("pro")
    response = Client().post(
        path, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {tenant.test_api_key}"
    )
    assert response.status_code == 503, response.content[:200]
    assert response.json()["error"]["code"] == "no_node_available"
    assert response["Retry-After"] == "5"
