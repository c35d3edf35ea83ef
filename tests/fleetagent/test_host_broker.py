"""A host's worker keeps fetching after an ack that could not reach Redis (found by tests/faults).

kombu forgets a delivery only once Redis has answered its ack, so a job finished while Redis
restarts left the delivery counted against the prefetch limit (1) for good: the worker
reconnected but never fetched again. ``SettledQoS`` settles it in the worker's own books.
"""

from __future__ import annotations

import shutil

import pytest
from kombu import Connection

from fleetagent.agent.worker import RedisTransport
from tests.faults.fleet import PrivateRedis

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="needs redis-server for a private instance"
)


def test_an_ack_lost_with_redis_still_frees_the_prefetch_slot():
    redis = PrivateRedis()
    redis.start()
    try:
        connection = Connection(redis.url, transport=RedisTransport)
        queue = connection.SimpleQueue("node.test")
        queue.put({"job": {"job_id": 1}})
        message = queue.get(timeout=5)  # delivered, not yet acked (a job running, acks_late)
        qos = message.channel.qos
        qos.prefetch_count = 1
        assert not qos.can_consume()  # the one delivery the worker may hold
        redis.kill()  # Redis restarts while the job runs: its ack cannot reach it
        with pytest.raises(Exception, match="(?i)connect"):
            message.ack()
        assert qos.can_consume()  # settled here anyway: the worker fetches the next message
    finally:
        redis.kill()


def test_a_host_worker_on_redis_uses_that_transport():
    from fleetagent.agent.worker import worker_app

    app = worker_app(broker_url="redis://127.0.0.1:6379/0", runner=None, runtime=None)
    assert app.connection_for_read().transport_cls == f"{RedisTransport.__module__}:RedisTransport"
    amqp = worker_app(broker_url="amqp://127.0.0.1:5672//", runner=None, runtime=None)
    assert amqp.conf.broker_transport is None
