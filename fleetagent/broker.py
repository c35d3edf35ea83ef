"""Per-node broker users on RabbitMQ: each node may consume only its own queue.

With ``BROKER_URL=amqp://…`` (multi-host fleets) the console creates a RabbitMQ user for
every node when the node is created, and resets its password when the node token is
rotated (``fleetagent.services.node_create`` / ``node_token_rotate``); the password is
derived from the token (``fleetagent.protocol.broker_password``). Its permissions, on
``BROKER_VHOST``, name only the node's own queue and exchange (``node.<name>``, both
durable): it can declare and read them, and publish to its own exchange (a retried task goes
back to its own queue), nothing else. It cannot read another node's queue, publish to
another node, or send Celery remote-control broadcasts (the agent drains its worker in
process, not through ``celery.pidbox``).

No management plugin: the console calls ``rabbitmqctl`` (``RABBITMQCTL``, run where the
console runs with rights on the RabbitMQ node, e.g. ``sudo -u rabbitmq rabbitmqctl`` or
``docker exec rabbit rabbitmqctl``). With a Redis broker (single-trust setups) this is a
no-op: every host shares the broker's one password.
"""

from __future__ import annotations

import logging
import re
import shlex
import subprocess

from django.conf import settings

from console.errors import VoxfleetError
from fleetagent.protocol import broker_password, broker_username

logger = logging.getLogger(__name__)


class BrokerProvisioningFailed(VoxfleetError):
    code = "broker_provisioning_failed"
    status = 502


def broker_isolated() -> bool:
    """Whether nodes get their own broker users (the broker is RabbitMQ)."""
    return str(settings.CELERY_BROKER_URL).startswith(("amqp://", "amqps://", "pyamqp://"))


def broker_permissions(node_name: str) -> tuple[str, str, str]:
    """(configure, write, read) regexes: only ``node.<name>``, the queue and its exchange."""
    own = f"^{re.escape(f'node.{node_name}')}$"
    return own, own, own


def _ctl(*args: str) -> subprocess.CompletedProcess:
    command = [*shlex.split(settings.RABBITMQCTL), *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrokerProvisioningFailed(f"Could not run {command[0]}: {exc}") from exc
    return done


def broker_user_provision(*, node_name: str, token: str) -> bool:
    """Create (or re-password) the node's broker user and set its permissions; False when not isolated."""
    if not broker_isolated():
        return False
    user, password = broker_username(node_name), broker_password(token)
    vhost = settings.BROKER_VHOST
    # The password goes on stdin (never in a process list): rabbitmqctl reads it there when
    # the argument is left out.
    added = _ctl_with_stdin(["add_user", user], password)
    if added.returncode != 0 and "already exists" in (added.stderr + added.stdout):
        added = _ctl_with_stdin(["change_password", user], password)
    if added.returncode != 0:
        raise BrokerProvisioningFailed(f"rabbitmqctl could not set the broker user {user}: {added.stderr.strip()}")
    done = _ctl("set_permissions", "-p", vhost, user, *broker_permissions(node_name))
    if done.returncode != 0:
        raise BrokerProvisioningFailed(f"rabbitmqctl could not set permissions of {user}: {done.stderr.strip()}")
    logger.info("broker user %s provisioned on vhost %s", user, vhost)
    return True


def _ctl_with_stdin(args: list[str], secret: str) -> subprocess.CompletedProcess:
    command = [*shlex.split(settings.RABBITMQCTL), *args]
    try:
        return subprocess.run(  # noqa: S603
            command, input=secret + "\n", capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrokerProvisioningFailed(f"Could not run {command[0]}: {exc}") from exc


def broker_user_delete(*, node_name: str) -> None:
    if broker_isolated():
        _ctl("delete_user", broker_username(node_name))
