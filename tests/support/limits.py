"""Rate-limit counters and node-queue messages that must not outlive the test that made them.

Tenant ids and node names repeat from run to run (every fresh test database starts at id 1),
so a per-tenant counter or a Celery message left in Redis would count against, or be run by,
the next test's tenant or node. Without REDIS_URL only the in-process counters exist.
"""

from __future__ import annotations

from django.conf import settings

from console.redis_client import redis_client

RATE_LIMIT_KEYS = "vf:billing:*"  # billing's rate-limit key space (billing/services/limits.py)
TEST_NODE_QUEUES = "node.t-*"  # the Celery queues of the tests' nodes, all named "t-…"


def redis_keys_delete(url: str, *patterns: str) -> None:
    """Delete every key matching one of ``patterns`` on the Redis server at ``url``."""
    client = redis_client(url)
    for pattern in patterns:
        for key in client.scan_iter(pattern):
            client.delete(key)


def limits_clear(*node_queues: str) -> None:
    """Forget the rate-limit counters (in this process, and in Redis with REDIS_URL) and the
    messages waiting in the node queues matching ``node_queues`` (e.g. ``TEST_NODE_QUEUES``)."""
    # Imported here: the live-server launcher (and through it the benchmarks) imports this
    # module before Django is set up, and billing.services needs the app registry.
    from billing.services import limits_reset_for_tests

    limits_reset_for_tests()
    if settings.REDIS_URL:
        redis_keys_delete(settings.REDIS_URL, RATE_LIMIT_KEYS, *node_queues)
