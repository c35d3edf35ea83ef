"""/metrics answers 401 to any malformed credential, never 500."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "header",
    [
        "Bearer tökén-ß",
        "Bearer 令牌",
        "Bearer ",
        "Bearer",
        "bearer \x00\x01",
        "Basic dXNlcjpwYXNz",
        "Bearer " + "x" * 10_000,
        "Token abc",
    ],
)
def test_malformed_credentials_get_401(client, settings, header):
    settings.METRICS_TOKEN = "s3cret-metrics-token"
    response = client.get("/metrics", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401


def test_without_a_configured_token_a_bearer_is_401(client, settings):
    settings.METRICS_TOKEN = None
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ñ").status_code == 401
