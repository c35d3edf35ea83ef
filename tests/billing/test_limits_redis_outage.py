"""Rate and concurrency limits fail closed when Redis is unreachable: JSON 503 with Retry-After.

A private redis-server on a free port is started for the test and stopped mid-test (the
shared one is never touched)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest
from django.test import Client

from billing.services import job_slot_acquire, job_slot_release, limits_reset_for_tests, request_admit
from console.errors import ServiceUnavailable

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def private_redis(settings, tmp_path):
    port = _free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    limits_reset_for_tests()

    def stop():
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)

    proc.stop = stop
    yield proc
    stop()
    limits_reset_for_tests()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_limits_fail_closed_when_redis_goes_away(make_tenant, private_redis):
    tenant = make_tenant("pro")
    request_admit(tenant=tenant)
    job_slot_acquire(tenant=tenant, job_id=1)
    job_slot_release(tenant=tenant, job_id=1)
    private_redis.stop()

    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as info:
        request_admit(tenant=tenant)
    assert time.monotonic() - started < 3
    assert info.value.status == 503 and info.value.headers["Retry-After"] == "5"
    with pytest.raises(ServiceUnavailable):
        job_slot_acquire(tenant=tenant, job_id=2)
    job_slot_release(tenant=tenant, job_id=2)  # giving a slot back never raises (its TTL reclaims it)

    auth = {"HTTP_AUTHORIZATION": f"Bearer {tenant.test_api_key}"}
    r = Client().post("/api/v1/jobs", {"input": "你好", "voice": "zh-female"}, content_type="application/json", **auth)
    assert r.status_code == 503 and r["Retry-After"] == "5"
    assert r["Content-Type"].startswith("application/json")
    assert r.json()["error"]["code"] == "limits_unavailable"
    r = Client().post(
        "/v1/audio/speech",
        {"model": "cosyvoice-3", "input": "你好", "voice": "alloy"},
        content_type="application/json",
        **auth,
    )
    assert r.status_code == 503 and r["Retry-After"] == "5"
    assert r.json()["error"]["code"] == "limits_unavailable" and r.json()["error"]["type"] == "server_error"
