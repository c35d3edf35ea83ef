"""Per-plan rate limits (Redis when REDIS_URL is set, in-process otherwise)."""

import threading

import pytest

from billing.errors import RateLimited
from billing.services import job_slot_acquire, job_slot_release, job_slots_in_use, request_admit


def test_requests_per_minute(make_tenant):
    tenant = make_tenant("free")  # 10 per minute
    now = 1_000_040.0  # 20 s into a minute window (1_000_020 is a multiple of 60)
    for _ in range(10):
        request_admit(tenant=tenant, now=now)
    with pytest.raises(RateLimited) as exc:
        request_admit(tenant=tenant, now=now + 1)
    assert exc.value.status == 429 and exc.value.code == "rate_limit_exceeded"
    assert exc.value.headers["Retry-After"] == "39"
    assert "10 requests per minute" in exc.value.message
    request_admit(tenant=tenant, now=now + 60)  # next window


def test_limits_are_per_tenant(make_tenant):
    a, b = make_tenant("free"), make_tenant("free")
    for _ in range(10):
        request_admit(tenant=a, now=5_000_000.0)
    request_admit(tenant=b, now=5_000_000.0)


def test_rpm_is_atomic_under_threads(make_tenant):
    tenant = make_tenant("pro")  # 120 per minute
    admitted, refused = [], []
    barrier = threading.Barrier(16)

    def hammer():
        barrier.wait()
        for _ in range(20):
            try:
                request_admit(tenant=tenant, now=7_000_000.0)
                admitted.append(1)
            except RateLimited:
                refused.append(1)

    threads = [threading.Thread(target=hammer) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(admitted) == 120 and len(refused) == 16 * 20 - 120


def test_concurrent_job_slots(make_tenant):
    tenant = make_tenant("free")  # 1 concurrent job
    job_slot_acquire(tenant=tenant, job_id=1)
    job_slot_acquire(tenant=tenant, job_id=1)  # idempotent for the same job
    with pytest.raises(RateLimited) as exc:
        job_slot_acquire(tenant=tenant, job_id=2)
    assert exc.value.headers["Retry-After"]
    assert job_slots_in_use(tenant=tenant) == 1
    job_slot_release(tenant=tenant, job_id=1)
    job_slot_release(tenant=tenant, job_id=1)  # no-op
    job_slot_acquire(tenant=tenant, job_id=2)
    assert job_slots_in_use(tenant=tenant) == 1


def test_stale_slots_are_reclaimed(make_tenant):
    from billing.services.limits import SLOT_TTL_S

    tenant = make_tenant("free")
    job_slot_acquire(tenant=tenant, job_id="crashed", now=1_000.0)
    job_slot_acquire(tenant=tenant, job_id="next", now=1_000.0 + SLOT_TTL_S + 1)


def test_slots_atomic_under_threads(make_tenant):
    tenant = make_tenant("pro")  # 4 concurrent jobs
    won = []
    barrier = threading.Barrier(24)

    def grab(i):
        barrier.wait()
        try:
            job_slot_acquire(tenant=tenant, job_id=f"job-{i}")
            won.append(i)
        except RateLimited:
            pass

    threads = [threading.Thread(target=grab, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 4 and job_slots_in_use(tenant=tenant) == 4


def test_backend_matches_settings(settings):
    # Under CI/PostgreSQL runs REDIS_URL is set and these tests exercised the Lua scripts.
    from billing.services import limits

    if settings.REDIS_URL:
        assert limits._redis().ping()
    else:
        assert limits._redis_client is None
