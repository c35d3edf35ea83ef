"""The real agent client against a live uvicorn server (real sockets, real protocol)."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import websockets
from channels.db import database_sync_to_async

from billing.services import user_create
from console.consumers.wire import DashboardCopy
from fleetagent.agent.client import AgentClient
from fleetagent.agent.collect import collector_open
from fleetagent.agent.runtime import NodeRuntime
from fleetagent.agent.stats import JobStats
from fleetagent.models import GpuSample, Node, NodeAction
from fleetagent.services import node_create
from tests.console.consumers.fleet_helpers import OUR_ORIGIN, session_cookie_headers
from tests.fleetagent.fake_nvml import FakeNvml
from tests.support.live_server import ThreadedLiveServer, free_port

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.timeout(120)]


@pytest.fixture
def live_server_asgi():
    server = ThreadedLiveServer().start()
    yield server
    server.stop()


def _agent(url: str, token: str, node_name: str) -> AgentClient:
    stats = JobStats()
    return AgentClient(
        console_url=url,
        token=token,
        collector=collector_open(nvml=FakeNvml()),
        runtime=NodeRuntime(node_name=node_name, stats=stats),
        stats=stats,
        interval_s=0.2,
    )


async def _until(predicate, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_agent_streams_to_dashboard_and_restarts_from_the_api(live_server_asgi):
    node, token = await database_sync_to_async(node_create)(name="gpu-live")
    staff = await database_sync_to_async(user_create)(
        username="ops", password="pw-secret-123", email="ops@example.com", is_staff=True
    )
    cookie = dict(await session_cookie_headers(staff))[b"cookie"].decode()
    ws_url = live_server_asgi.url.replace("http", "ws") + "/ws/ops/fleet/"
    agent = _agent(live_server_asgi.url, token, node.name)
    started = time.monotonic()
    agent_task = asyncio.create_task(agent.run())
    try:
        async with websockets.connect(ws_url, additional_headers={"Cookie": cookie}, origin=OUR_ORIGIN) as dashboard:
            copy = DashboardCopy()
            assert copy.apply(json.loads(await dashboard.recv())) is not None and node.pk in copy.nodes  # the snapshot

            async def live_gpu():
                entries = copy.apply(json.loads(await asyncio.wait_for(dashboard.recv(), timeout=5)))
                assert entries is not None, "a gap in the batches"
                return copy.readings(node.pk) if any(n["id"] == node.pk and n.get("ts") for n in entries) else None

            gpus = await _until(live_gpu, timeout=10, what="a live GPU reading on the dashboard")
            assert time.monotonic() - started < 2.0  # the node shows up live within 2 s
            assert gpus[0]["utilization"] == 87.0 and gpus[1]["vram_used_mb"] == 512.0

        async with httpx.AsyncClient(base_url=live_server_asgi.url, headers={"Cookie": cookie}) as http:
            page = await http.get("/ops/")
            assert page.status_code == 200
            csrf = page.cookies.get("csrftoken") or http.cookies.get("csrftoken")
            response = await http.post(
                "/ops/api/nodes/gpu-live/actions/",
                json={"action": "restart"},
                headers={"X-CSRFToken": csrf, "Cookie": f"{cookie}; csrftoken={csrf}", "Referer": live_server_asgi.url},
            )
            assert response.status_code == 202, response.text
            action_id = response.json()["id"]

            async def acknowledged():
                body = (await http.get(f"/ops/api/actions/{action_id}/")).json()
                return body if body["outcome"] != "pending" else None

            body = await _until(acknowledged, timeout=60, what="the restart acknowledgement")
        assert body["outcome"] == "succeeded", body
        assert body["detail"]["engine_reloaded"] is True
        assert "vram_before_mb" in body["detail"] and "vram_after_mb" in body["detail"]
        node = await database_sync_to_async(Node.objects.get)(pk=node.pk)
        assert node.state == "online" and node.gpu_model == "NVIDIA A10" and node.gpu_count == 2
    finally:
        agent.stop()
        await asyncio.wait_for(agent_task, timeout=10)


async def test_wrong_token_agent_never_connects(live_server_asgi):
    agent = _agent(live_server_asgi.url, "vfn_notreal_" + "x" * 30, "nobody")
    task = asyncio.create_task(agent.run())
    try:

        async def refused():
            return agent.last_refusal

        assert "HTTP 403" in await _until(refused, timeout=10, what="the refusal")
        assert agent.connects == 0
    finally:
        agent.stop()
        await asyncio.wait_for(task, timeout=10)


async def test_agent_buffers_while_console_is_down_then_reconnects_and_delivers():
    node, token = await database_sync_to_async(node_create)(name="gpu-late")
    port = free_port()
    agent = _agent(f"http://127.0.0.1:{port}", token, node.name)
    task = asyncio.create_task(agent.run())
    server = None
    try:
        # Console down: samples pile up while connection attempts back off.
        await _until(lambda: asyncio.sleep(0, len(agent.buffer) >= 5), timeout=20, what="five buffered samples")
        assert agent.connects == 0
        buffered = len(agent.buffer)
        server = ThreadedLiveServer(port).start()

        async def delivered():
            count = await database_sync_to_async(GpuSample.objects.filter(node=node).count)()
            return count >= 2 * buffered  # two GPUs per sample

        await _until(delivered, timeout=20, what="the buffered samples in the database")
        assert agent.connects == 1
        assert not await database_sync_to_async(NodeAction.objects.exists)()
    finally:
        agent.stop()
        await asyncio.wait_for(task, timeout=10)
        if server is not None:
            server.stop()
