"""RabbitMQ: each node's broker user reads only its own queue (issue 10, item 2).

Needs RabbitMQ on 127.0.0.1:5672 (guest/guest) and ``rabbitmqctl`` on this machine; skipped
with the reason otherwise.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import uuid

import amqp
import pytest

from fleetagent import protocol
from fleetagent.broker import broker_permissions
from fleetagent.services import node_create, node_token_rotate

ADMIN = "amqp://guest:guest@127.0.0.1:5672//"


def _rabbit_reason() -> str:
    if shutil.which("rabbitmqctl") is None:
        return "rabbitmqctl is not installed here"
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError:
        return "no RabbitMQ on 127.0.0.1:5672"
    return ""


pytestmark = [pytest.mark.skipif(bool(_rabbit_reason()), reason=_rabbit_reason() or "-"), pytest.mark.django_db]


def _connect(user: str, password: str) -> amqp.Connection:
    conn = amqp.Connection(host="127.0.0.1:5672", userid=user, password=password, virtual_host="/", connect_timeout=5)
    conn.connect()
    return conn


@pytest.fixture
def rabbit(settings):
    settings.CELERY_BROKER_URL = ADMIN
    settings.BROKER_VHOST = "/"
    made: list[str] = []
    yield made
    admin = _connect("guest", "guest")
    channel = admin.channel()
    for name in made:
        channel.queue_delete(f"node.{name}")
        channel.exchange_delete(f"node.{name}")
        subprocess.run(["rabbitmqctl", "delete_user", protocol.broker_username(name)], capture_output=True, check=False)
    admin.close()


def _publish(queue: str, body: bytes) -> None:
    admin = _connect("guest", "guest")
    channel = admin.channel()
    # What the console's Celery producer declares for a node's queue: durable, same-named exchange.
    channel.exchange_declare(queue, "direct", durable=True, auto_delete=False)
    channel.queue_declare(queue, durable=True, auto_delete=False)
    channel.queue_bind(queue, queue, routing_key=queue)
    channel.basic_publish(amqp.Message(body, delivery_mode=2), exchange=queue, routing_key=queue)
    admin.close()


def test_node_a_cannot_read_node_b_s_queue_and_a_rotated_token_rotates_its_broker_password(rabbit):
    suffix = uuid.uuid4().hex[:8]
    a_name, b_name = f"t-iso-a-{suffix}", f"t-iso-b-{suffix}"
    rabbit.extend([a_name, b_name])
    node_a, token_a = node_create(name=a_name)
    _node_b, _token_b = node_create(name=b_name)
    _publish(f"node.{a_name}", b"job for A")
    _publish(f"node.{b_name}", b"job for B")

    a = _connect(protocol.broker_username(a_name), protocol.broker_password(token_a))
    own = a.channel()
    own.queue_declare(f"node.{a_name}", durable=True, auto_delete=False)  # what its worker does at start
    message = own.basic_get(f"node.{a_name}", no_ack=False)
    assert message is not None and message.body == b"job for A"
    own.basic_ack(message.delivery_tag)

    for attempt in (
        lambda ch: ch.basic_get(f"node.{b_name}", no_ack=False),
        lambda ch: ch.basic_consume(f"node.{b_name}", callback=lambda m: None),
        lambda ch: ch.basic_publish(amqp.Message(b"forged"), exchange=f"node.{b_name}", routing_key=f"node.{b_name}"),
        lambda ch: ch.basic_publish(amqp.Message(b"control"), exchange="celery.pidbox", routing_key=""),
    ):
        channel = a.channel()
        with pytest.raises(amqp.exceptions.AccessRefused, match="access to"):
            attempt(channel)
            channel.basic_qos(0, 1, False)  # a refused publish surfaces on the next round trip
    a.close()

    # B's job is still there for B.
    admin = _connect("guest", "guest")
    still = admin.channel().basic_get(f"node.{b_name}", no_ack=True)
    assert still is not None and still.body == b"job for B"
    admin.close()

    new_token = node_token_rotate(node=node_a)
    with pytest.raises(amqp.exceptions.AccessRefused):
        _connect(protocol.broker_username(a_name), protocol.broker_password(token_a))
    _connect(protocol.broker_username(a_name), protocol.broker_password(new_token)).close()


def test_permissions_name_only_the_node_s_own_queue():
    configure, write, read = broker_permissions("gpu.a")
    assert configure == write == read == r"^node\.gpu\.a$"
