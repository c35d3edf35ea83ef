"""The middleware stack runs on the event loop under ASGI: no middleware forces a thread hop."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import AsyncClient
from django.utils.module_loading import import_string


def test_every_middleware_runs_in_async_mode_too():
    # One sync-only middleware makes Django run the whole chain on a thread for every request,
    # with a hand-off there and back (measured on the speech endpoint's path, bench/synthesis_e2e.py).
    sync_only = [path for path in settings.MIDDLEWARE if not getattr(import_string(path), "async_capable", False)]
    assert sync_only == []


@pytest.mark.django_db
async def test_static_files_are_served_by_the_async_chain():
    client = AsyncClient()
    response = await client.get("/static/vendor/plotly/plotly.min.js")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/javascript")
    body = b"".join(response.streaming_content)  # WhiteNoise's file response (a sync iterator)
    assert len(body) > 100_000
    missing = await client.get("/static/vendor/plotly/no-such-file.js")
    assert missing.status_code == 404


@pytest.mark.django_db
async def test_a_declared_body_over_the_cap_is_refused_in_async_mode(settings):
    settings.REQUEST_BODY_MAX_BYTES = 1000
    response = await AsyncClient().post(
        "/v1/audio/speech", data=b"x" * 2000, content_type="application/json", headers={"Authorization": "Bearer vf_x"}
    )
    assert response.status_code == 413
