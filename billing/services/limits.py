"""Per-plan rate limits: requests per minute and concurrent jobs (public: re-exported by ``billing.services``).

With ``settings.REDIS_URL`` the counters live in Redis and each check is one atomic Lua
script, so every console process and worker shares them; on the embedded default they live
in this process behind a lock (there is only one process).

When Redis cannot be reached the limits fail closed: admitting a request or taking a job
slot raises ``ServiceUnavailable`` (HTTP 503 with ``Retry-After``) within
``LIMITS_REDIS_TIMEOUT_S``, rather than serving unlimited traffic or an HTML 500. Giving a
slot back only logs: the slot's TTL reclaims it, and the job's money is already settled.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import TYPE_CHECKING

from django.conf import settings

from billing.errors import RateLimited
from console.errors import ServiceUnavailable

if TYPE_CHECKING:
    from billing.models import Tenant

log = logging.getLogger(__name__)

WINDOW_S = 60
# How long a limit check waits for Redis before refusing the request (fail closed).
LIMITS_REDIS_TIMEOUT_S = 0.5
RETRY_AFTER_UNAVAILABLE_S = 5
# A slot whose job never released it (worker killed) is reclaimed after this long.
SLOT_TTL_S = 3600

_RPM_LUA = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""
_SLOT_ACQUIRE_LUA = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
if redis.call('ZSCORE', KEYS[1], ARGV[4]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

_lock = threading.Lock()
_local_rpm: dict[tuple[int, int], int] = {}
_local_slots: dict[int, dict[str, float]] = {}
_redis_client = None
_redis_scripts: dict[str, object] = {}


def _redis():
    global _redis_client
    if _redis_client is None:
        import redis

        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=LIMITS_REDIS_TIMEOUT_S, socket_timeout=LIMITS_REDIS_TIMEOUT_S
        )
        _redis_scripts["rpm"] = client.register_script(_RPM_LUA)
        _redis_scripts["slot"] = client.register_script(_SLOT_ACQUIRE_LUA)
        _redis_client = client
    return _redis_client


def _redis_call(what: str, fn):
    """Run one Redis call; unreachable Redis becomes ServiceUnavailable (503, Retry-After)."""
    import redis

    try:
        return fn()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        log.warning("rate limits: Redis unreachable during %s (%s): refusing", what, exc)
        raise ServiceUnavailable(
            "Rate limiting is temporarily unavailable, so requests are refused for now; retry shortly.",
            code="limits_unavailable",
            retry_after=RETRY_AFTER_UNAVAILABLE_S,
        ) from None


def _key(kind: str, tenant_id: int, suffix: str = "") -> str:
    return f"vf:billing:{kind}:{tenant_id}{':' + suffix if suffix else ''}"


def request_admit(*, tenant: Tenant, now: float | None = None) -> None:
    """Count one API request against the plan's per-minute limit (fixed one-minute windows)."""
    limit = int(tenant.plan.requests_per_minute)
    now = time.time() if now is None else now
    window = int(now // WINDOW_S)
    retry_after = math.ceil((window + 1) * WINDOW_S - now)
    if settings.REDIS_URL:
        _redis()
        count = int(
            _redis_call(
                "request_admit",
                lambda: _redis_scripts["rpm"](keys=[_key("rpm", tenant.pk, str(window))], args=[WINDOW_S + 5]),
            )
        )
    else:
        with _lock:
            for stale in [k for k in _local_rpm if k[1] < window]:
                del _local_rpm[stale]
            count = _local_rpm.get((tenant.pk, window), 0) + 1
            _local_rpm[(tenant.pk, window)] = count
    if count > limit:
        raise RateLimited(
            f"The {tenant.plan.name} plan allows {limit} requests per minute; retry in {retry_after} s.",
            retry_after=retry_after,
        )


def job_slot_acquire(*, tenant: Tenant, job_id, now: float | None = None) -> None:
    """Take one of the plan's concurrent-job slots for ``job_id`` (idempotent per job)."""
    limit = int(tenant.plan.concurrent_jobs)
    now = time.time() if now is None else now
    member = str(job_id)
    if settings.REDIS_URL:
        _redis()
        ok = int(
            _redis_call(
                "job_slot_acquire",
                lambda: _redis_scripts["slot"](keys=[_key("slots", tenant.pk)], args=[now, limit, SLOT_TTL_S, member]),
            )
        )
    else:
        with _lock:
            slots = _local_slots.setdefault(tenant.pk, {})
            for stale in [m for m, t in slots.items() if t <= now - SLOT_TTL_S]:
                del slots[stale]
            ok = 1 if member in slots or len(slots) < limit else 0
            if ok:
                slots.setdefault(member, now)
    if not ok:
        raise RateLimited(
            f"The {tenant.plan.name} plan allows {limit} concurrent jobs; wait for one to finish.",
            retry_after=5,
        )


def job_slot_release(*, tenant: Tenant, job_id) -> None:
    """Give back the job's slot; releasing a slot that is not held is a no-op."""
    member = str(job_id)
    if settings.REDIS_URL:
        try:
            _redis_call("job_slot_release", lambda: _redis().zrem(_key("slots", tenant.pk), member))
        except ServiceUnavailable:
            pass  # logged; the slot expires after SLOT_TTL_S
    else:
        with _lock:
            _local_slots.get(tenant.pk, {}).pop(member, None)


def job_slots_in_use(*, tenant: Tenant) -> int:
    if settings.REDIS_URL:
        return int(_redis_call("job_slots_in_use", lambda: _redis().zcard(_key("slots", tenant.pk))))
    with _lock:
        return len(_local_slots.get(tenant.pk, {}))


def limits_reset_for_tests() -> None:
    """Forget in-process counters and the Redis client (tests only; Redis keys are namespaced per tenant id)."""
    global _redis_client
    _redis_client = None
    _redis_scripts.clear()
    with _lock:
        _local_rpm.clear()
        _local_slots.clear()
