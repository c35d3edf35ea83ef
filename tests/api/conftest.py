"""One real server (uvicorn, plus a Celery node worker with REDIS_URL) for the API tests."""

from __future__ import annotations

import pytest

from tests.api.live_server import live_server_start


@pytest.fixture(scope="session")
def live(tmp_path_factory):
    server = live_server_start(tmp_path_factory.mktemp("e2e"))
    yield server
    server.stop()
