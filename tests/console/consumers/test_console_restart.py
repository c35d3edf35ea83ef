"""Recovery from a console restart on the real shape: the console is a uvicorn process of its own
(PostgreSQL, a Redis channel layer), stopped and started again on the same port under a
connected agent (the real agent client) and a connected dashboard websocket.

Within RECOVERY_S of the console answering again the agent has reconnected and its next sample
reaches the dashboard, and a state change published from outside the console (what beat's
sweep does) reaches the dashboard through the new process's hub, so the hub is back in its group.

The console process must read the test's own database, so this runs on PostgreSQL only (the
suite's SQLite database lives in the test process); Redis is a private redis-server.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels_redis.core import RedisChannelLayer
from django.db import connection

from billing.services import user_create
from fleetagent.models import Node
from fleetagent.services import node_create
from tests.console.consumers.fleet_helpers import session_cookie_headers
from tests.console.consumers.test_live import _agent
from tests.console.consumers.test_recovery import RECOVERY_S, Dashboard, PrivateRedis, _until
from tests.support.live_server import ROOT, console_server_start, free_port

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")),
        reason="the console process must share the test's database: PostgreSQL only (SQLite's is in this process)",
    ),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed"),
]


@pytest.fixture
def redis_layer(tmp_path, monkeypatch):
    """A private Redis for the channel layer of both the console process and this test."""
    server = PrivateRedis(tmp_path)
    server.start()
    # The console's own settings (prefix and all), pointed at the private server.
    layer = RedisChannelLayer(hosts=[{"address": server.url, "socket_timeout": None}], capacity=5000, expiry=30)
    monkeypatch.setitem(channel_layers.backends, "default", layer)
    yield server
    server.stop()


def _console_env(redis_url: str) -> dict:
    """The console process's environment: the test database (its data is committed: transaction=True)."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    database_url = urlunsplit(parts._replace(path=f"/{connection.settings_dict['NAME']}"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "DJANGO_SETTINGS_MODULE": "console.settings",
            "PYTHONPATH": str(ROOT),
            "LOG_LEVEL": "WARNING",
            "DEBUG": "0",
        }
    )
    return env


async def test_after_a_console_restart_agents_dashboards_and_the_hub_are_live_within_5_s(redis_layer, tmp_path):
    from console.consumers.broadcast import fleet_nodes_broadcast

    node, token = await database_sync_to_async(node_create)(name="gpu-cr")
    staff = await database_sync_to_async(user_create)(
        username="ops", password="pw-secret-123", email="ops@example.com", is_staff=True
    )
    cookie = dict(await session_cookie_headers(staff))[b"cookie"].decode()
    env, port = _console_env(redis_layer.url), free_port()

    def start():
        return console_server_start(env=env, workdir=tmp_path, port=port, lifespan=None, ws="websockets-sansio")

    console = await asyncio.to_thread(start)
    dash = Dashboard(console.url.replace("http", "ws") + "/ws/ops/fleet/", cookie)
    agent = _agent(console.url, token, node.name)
    agent_task = asyncio.create_task(agent.run())
    try:

        async def live_after(t: float):
            return any(n.get("gpus") and n.get("ts", 0) > t for m in dash.since(t) for n in m.get("nodes", []))

        await _until(lambda: live_after(time.time() - 1), timeout=30, what="the first live reading")
        connects = agent.connects

        await asyncio.to_thread(console.stop)  # graceful stop: every socket closes
        console = await asyncio.to_thread(start)  # same port; ready once /healthz answers
        back = time.time()

        await _until(lambda: live_after(back), timeout=RECOVERY_S, what="a reading taken after the console came back")
        assert agent.connects > connects and dash.connects >= 2  # both really reconnected

        async def relayed():
            marker = f"marker {time.monotonic_ns()}"
            await database_sync_to_async(Node.objects.filter(pk=node.pk).update)(state_reason=marker)
            await database_sync_to_async(fleet_nodes_broadcast)(node_ids=[node.pk])
            await asyncio.sleep(0.3)
            return any(n.get("state_reason") == marker for m in dash.since(back) for n in m.get("nodes", []))

        await _until(relayed, timeout=RECOVERY_S, what="a state change relayed by the restarted console's hub")
        assert time.time() - back < RECOVERY_S, console.log_tail()
    finally:
        agent.stop()
        await asyncio.wait_for(agent_task, timeout=10)
        await dash.close()
        await asyncio.to_thread(console.stop)
