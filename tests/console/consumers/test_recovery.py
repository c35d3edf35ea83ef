"""Recovery on the real shape (Redis channel layer): a Redis restart under a connected
dashboard and agent, and /healthz with 50 websockets connected.

Each test starts a private redis-server on a free port (never the shared one) and points
the channel layer at it; the console runs in-process (uvicorn in a thread) on the test
database, so the test can watch both ends.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time

import httpx
import pytest
import websockets
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels_redis.core import RedisChannelLayer

from billing.services import user_create
from fleetagent.models import Node
from fleetagent.services import node_create
from tests.console.consumers.fleet_helpers import OUR_ORIGIN, hello, session_cookie_headers
from tests.console.consumers.test_live import _agent
from tests.support.live_server import ThreadedLiveServer, free_port

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.timeout(180),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed"),
]

RECOVERY_S = 5.0  # the bound: live again within 5 s of Redis being back


class PrivateRedis:
    """A throwaway redis-server (no persistence: a restart forgets every group, as in production)."""

    def __init__(self, tmp_path) -> None:
        self.port = free_port()
        self.dir = tmp_path
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.dir,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self.ping():
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False


@pytest.fixture
def private_redis(tmp_path, monkeypatch):
    server = PrivateRedis(tmp_path)
    server.start()
    layer = RedisChannelLayer(
        hosts=[{"address": server.url, "socket_timeout": None}], capacity=5000, expiry=30, prefix="vf-test"
    )
    monkeypatch.setitem(channel_layers.backends, "default", layer)
    yield server
    server.stop()


@pytest.fixture
def console():
    server = ThreadedLiveServer().start()
    yield server
    server.stop()


async def _until(predicate, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Dashboard:
    """A browser's dashboard: reconnects when its socket closes and keeps what it received."""

    def __init__(self, url: str, cookie: str) -> None:
        self.url, self.cookie = url, cookie
        self.messages: list[tuple[float, dict]] = []
        self.connects = 0
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                async with websockets.connect(
                    self.url, additional_headers={"Cookie": self.cookie}, origin=OUR_ORIGIN
                ) as ws:
                    self.connects += 1
                    async for raw in ws:
                        self.messages.append((time.time(), json.loads(raw)))
            except (OSError, websockets.ConnectionClosed, websockets.InvalidStatus):
                pass
            await asyncio.sleep(0.5)

    def since(self, t: float):
        return [m for at, m in self.messages if at >= t]

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def test_after_a_redis_restart_agents_dashboards_and_the_hub_are_live_within_5_s(private_redis, console):
    from console.consumers.broadcast import fleet_nodes_broadcast

    node, token = await database_sync_to_async(node_create)(name="gpu-r")
    staff = await database_sync_to_async(user_create)(
        username="ops", password="pw-secret-123", email="ops@example.com", is_staff=True
    )
    cookie = dict(await session_cookie_headers(staff))[b"cookie"].decode()
    dash = Dashboard(console.url.replace("http", "ws") + "/ws/ops/fleet/", cookie)
    agent = _agent(console.url, token, node.name)
    agent_task = asyncio.create_task(agent.run())
    try:

        async def live_after(t: float):
            # A node entry with a newer ts is a new reading (a delta carries only the GPU fields that changed).
            return any(n.get("ts", 0) > t for m in dash.since(t) for n in m.get("nodes", []))

        await _until(lambda: live_after(time.time() - 1), timeout=15, what="the first live reading")

        private_redis.stop()
        await asyncio.sleep(1.0)  # Redis away
        private_redis.start()  # empty: every group and channel forgotten
        back = time.time()

        await _until(lambda: live_after(back), timeout=RECOVERY_S, what="a reading taken after Redis came back")

        # A state change published from outside this process (what beat's sweep does) reaches
        # the dashboard through the hub's relay, which must be back in its group.
        async def relayed():
            marker = f"marker {time.monotonic_ns()}"
            await database_sync_to_async(Node.objects.filter(pk=node.pk).update)(state_reason=marker)
            await database_sync_to_async(fleet_nodes_broadcast)(node_ids=[node.pk])
            await asyncio.sleep(0.3)
            return any(n.get("state_reason") == marker for m in dash.since(back) for n in m.get("nodes", []))

        await _until(relayed, timeout=RECOVERY_S, what="a relayed state change after the restart")
        assert time.time() - back < RECOVERY_S
    finally:
        agent.stop()
        await asyncio.wait_for(agent_task, timeout=10)
        await dash.close()


async def test_healthz_is_200_with_50_websockets_connected_and_503_naming_redis_when_it_is_down(private_redis, console):
    nodes = await database_sync_to_async(lambda: [node_create(name=f"h-{i:02d}") for i in range(50)])()
    sockets = []
    try:
        for _, token in nodes:
            ws = await websockets.connect(
                console.url.replace("http", "ws") + "/ws/agent/",
                additional_headers={"Authorization": f"Bearer {token}"},
            )
            await ws.send(hello())
            assert json.loads(await ws.recv())["type"] == "welcome"
            sockets.append(ws)
        async with httpx.AsyncClient(base_url=console.url, timeout=10) as http:
            for _ in range(3):
                response = await http.get("/healthz")
                body = response.json()
                assert response.status_code == 200, body
                assert body["checks"]["channel_layer"]["ms"] < 1000, body
            private_redis.stop()
            response = await http.get("/healthz")
            assert response.status_code == 503 and response.json()["failing"] == ["channel_layer"]
            assert response.json()["checks"]["database"]["ok"]
            private_redis.start()

            async def healthy():
                return (await http.get("/healthz")).status_code == 200

            await _until(healthy, timeout=RECOVERY_S, what="/healthz back to 200")
    finally:
        for ws in sockets:
            await ws.close()
