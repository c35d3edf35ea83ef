"""A hostile node (a stolen token, a broken agent) cannot harm the console or another node.

Each frame the issue found harmful, sent by one node while another streams normally: the
bad frames are refused, counted on the sender, and never reach storage or the dashboards;
the good node stays online with every sample stored; /metrics keeps answering 200.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.services import user_create
from console.consumers import agents
from console.consumers.hub import hub
from fleetagent import protocol
from fleetagent.models import GpuSample, Node, NodeAction, NodeState
from fleetagent.services import node_create, node_states_sweep
from tests.console.consumers.fleet_helpers import (
    DashboardReader,
    agent_headers,
    hello,
    sample,
    session_cookie_headers,
    ws_connected,
)
from tests.fleetagent.test_frames import hostile_samples

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

AGENT = "/ws/agent/"
DASHBOARD = "/ws/ops/fleet/"
XSS = '<img src=x onerror="fetch(`/ops/api/nodes/good/actions/`,{method:`POST`})">'


def _sample_dict(**overrides) -> dict:
    frame = json.loads(sample(1))
    frame.update(overrides)
    return frame


def hostile_frames() -> list[tuple[str, str]]:
    """(what, frame text) for each harmful frame the issue lists."""
    bad_gpu = json.loads(sample(1))["gpus"][0]
    return [
        ("ts 1e20", json.dumps(_sample_dict(ts=1e20))),
        ("NaN", sample(1).replace('"utilization":55.0', '"utilization":NaN')),
        ("string for a number", json.dumps(_sample_dict(gpus=[{**bad_gpu, "vram_used_mb": "lots"}]))),
        ("markup as GPU index", json.dumps(_sample_dict(gpus=[{**bad_gpu, "index": XSS}]))),
        ("rtf_mean n/a", json.dumps(_sample_dict(node={"rtf_mean": "n/a"}))),
        (
            "50,000 GPUs in 0.9 MB",
            json.dumps(_sample_dict(gpus=[{"index": i, "utilization": 1.0} for i in range(50_000)])),
        ),
    ]


@database_sync_to_async
def _make_nodes():
    good, good_token = node_create(name="good", gpu_model="A10")
    bad, bad_token = node_create(name="hostile", gpu_model="A10")
    staff = user_create(username="ops", password="pw-secret-123", email="ops@example.com", is_staff=True)
    return good, good_token, bad, bad_token, staff


@database_sync_to_async
def _metrics_status() -> tuple[int, str]:
    client = Client()
    client.force_login(Node.objects.none().model._meta.apps.get_model("auth", "User").objects.get(username="ops"))
    response = client.get("/metrics")
    return response.status_code, response.content.decode()


async def _stored(count: int, *, timeout: float = 10.0) -> int:
    """Flush the hub until ``count`` sample rows are stored (frames are handled by their own task)."""
    deadline = time.monotonic() + timeout
    stored = 0
    while time.monotonic() < deadline:
        await hub.flush(persist=True)
        stored = await database_sync_to_async(GpuSample.objects.count)()
        if stored >= count:
            return stored
        await asyncio.sleep(0.05)
    raise AssertionError(f"only {stored} of {count} sample rows stored")


async def _hello(agent, **extra) -> dict:
    await agent.send_to(text_data=hello(**extra))
    return json.loads(await agent.receive_from(timeout=5))


async def test_hostile_frames_are_refused_counted_and_never_reach_storage_or_dashboards():
    good, good_token, bad, bad_token, staff = await _make_nodes()
    async with (
        ws_connected(DASHBOARD, headers=await session_cookie_headers(staff)) as ws,
        ws_connected(AGENT, headers=agent_headers(good_token)) as good_agent,
        ws_connected(AGENT, headers=agent_headers(bad_token)) as bad_agent,
    ):
        dash = DashboardReader(ws)
        assert (await dash.next())["type"] == "snapshot"
        assert (await _hello(good_agent))["type"] == "welcome"
        assert (await _hello(bad_agent, hostname=XSS, gpu_model=XSS[:64]))["type"] == "welcome"
        await hub.flush(persist=True)
        sent = hostile_frames()
        for seq, (what, text) in enumerate(sent, start=1):
            await bad_agent.send_to(text_data=text)
            error = json.loads(await bad_agent.receive_from(timeout=5))
            assert error["type"] == "error" and error["code"] == "bad_frame", what
            await good_agent.send_to(text_data=sample(seq, util=10.0 + seq))
        # The hostile socket is still open (a bad sample is refused, not fatal) and a good
        # frame from it still counts: the node harmed nobody but its own numbers.
        await bad_agent.send_to(text_data=sample(99, util=1.0))
        await _stored(len(sent) + 1)

        # Every batch the dashboard got: the good node's readings, nothing of the refused frames.
        good_utils = set()
        while not await ws.receive_nothing(timeout=0.3):
            await dash.next()
            good_utils |= {g["utilization"] for g in dash.readings(good.pk)}
            for node_id in dash.copy.nodes:
                for reading in dash.readings(node_id):
                    assert isinstance(reading["index"], int)
                    assert isinstance(reading["vram_used_mb"], float)
        assert 10.0 + len(sent) in good_utils

    good = await database_sync_to_async(Node.objects.get)(pk=good.pk)
    bad = await database_sync_to_async(Node.objects.get)(pk=bad.pk)
    assert good.state == NodeState.ONLINE and good.last_seen_at is not None
    assert good.frames_refused == 0
    assert bad.frames_refused == len(sent) and bad.last_refusal.startswith("size:")
    rows = await database_sync_to_async(lambda: sorted(GpuSample.objects.values_list("node__name", "utilization")))()
    assert rows == sorted([("good", 10.0 + i) for i in range(1, len(sent) + 1)] + [("hostile", 1.0)])
    # Nothing a node sent harmed the fleet: nobody went offline, /metrics answers.
    assert await database_sync_to_async(node_states_sweep)() == []
    status, text = await _metrics_status()
    assert status == 200 and 'node="good"' in text


async def test_a_flood_is_cut_off_and_the_rest_of_the_fleet_is_unaffected(monkeypatch):
    monkeypatch.setattr(agents, "FRAME_BURST", 5)
    monkeypatch.setattr(agents, "FRAME_RATE_PER_S", 0.5)
    monkeypatch.setattr(agents, "_frame_rates", {})
    good, good_token, bad, bad_token, _ = await _make_nodes()
    async with ws_connected(AGENT, headers=agent_headers(bad_token)) as bad_agent:
        await _hello(bad_agent)
        for seq in range(1, 5):
            await bad_agent.send_to(text_data=sample(seq))
        await bad_agent.send_to(text_data=sample(5))  # the burst is spent
        error = json.loads(await bad_agent.receive_from(timeout=5))
        assert error["type"] == "error" and "frames/s" in error["message"]
        assert await bad_agent.receive_output(timeout=5) == {
            "type": "websocket.close",
            "code": protocol.CLOSE_RATE_LIMITED,
        }
    # Reconnecting does not refill the bucket: the rate is kept per node.
    async with ws_connected(AGENT, headers=agent_headers(bad_token)) as again:
        await again.send_to(text_data=hello())
        assert json.loads(await again.receive_from(timeout=5))["type"] == "error"
    # The good node is not affected by the hostile one's spent rate.
    async with ws_connected(AGENT, headers=agent_headers(good_token)) as good_agent:
        assert (await _hello(good_agent))["type"] == "welcome"
    bad = await database_sync_to_async(Node.objects.get)(pk=bad.pk)
    assert bad.frames_refused == 2 and bad.last_refusal.startswith("rate:")


async def test_frames_before_hello_and_unknown_types_close_the_socket():
    _, token, _, _, _ = await _make_nodes()
    async with ws_connected(AGENT, headers=agent_headers(token)) as agent:
        await agent.send_to(text_data=sample(1))
        assert json.loads(await agent.receive_from(timeout=5))["message"] == "say hello first"
        assert (await agent.receive_output(timeout=5))["code"] == protocol.CLOSE_BAD_PROTOCOL
    async with ws_connected(AGENT, headers=agent_headers(token)) as agent:
        await agent.send_to(text_data=json.dumps({"type": "welcome", "v": 2}))
        assert "unexpected message type" in json.loads(await agent.receive_from(timeout=5))["message"]
        assert (await agent.receive_output(timeout=5))["code"] == protocol.CLOSE_BAD_PROTOCOL


@pytest.mark.parametrize("origin", ["http://evil.example", None])
async def test_dashboard_refuses_other_origins_even_with_a_staff_session(origin):
    staff = await database_sync_to_async(user_create)(
        username="ops", password="pw-secret-123", email="ops@example.com", is_staff=True
    )
    async with ws_connected(DASHBOARD, headers=await session_cookie_headers(staff, origin=origin), expect=False):
        pass


async def test_a_drained_node_stays_drained_when_its_restarted_v2_agent_says_otherwise():
    node, token = await database_sync_to_async(node_create)(name="gpu-d")
    await database_sync_to_async(Node.objects.filter(pk=node.pk).update)(drained=True, state=NodeState.OFFLINE)
    async with ws_connected(AGENT, headers=agent_headers(token)) as agent:
        welcome = await _hello(agent, draining=False)
        assert (
            welcome["type"] == "welcome" and welcome["draining"] is True and welcome["v"] == protocol.PROTOCOL_VERSION
        )
        await agent.send_to(text_data=sample(1, draining=False))
        await hub.flush(persist=True)
    node = await database_sync_to_async(Node.objects.get)(pk=node.pk)
    assert node.state == NodeState.DRAINING and node.drained
    audit = await database_sync_to_async(lambda: list(NodeAction.objects.values_list("action", "outcome", "message")))()
    assert [(a, o) for a, o, _ in audit] == [("drain", "succeeded")] and "told in welcome" in audit[0][2]


async def test_a_v1_agent_that_reconnects_undrained_is_sent_the_drain_again():
    node, token = await database_sync_to_async(node_create)(name="gpu-v1")
    await database_sync_to_async(Node.objects.filter(pk=node.pk).update)(drained=True, state=NodeState.OFFLINE)
    async with ws_connected(AGENT, headers=agent_headers(token)) as agent:
        v1_hello = json.loads(hello(draining=False))
        v1_hello["v"] = 1
        await agent.send_to(text_data=json.dumps(v1_hello))
        welcome = json.loads(await agent.receive_from(timeout=5))
        assert welcome["type"] == "welcome" and welcome["v"] == 1 and welcome["protocol"] == 1
        command = json.loads(await agent.receive_from(timeout=5))
        assert command["type"] == "command" and command["action"] == "drain" and command["v"] == 1
        ack = {"type": "ack", "v": 1, "command_id": command["command_id"], "action": "drain", "ok": True, "detail": {}}
        await agent.send_to(text_data=json.dumps(ack))
        await agent.send_to(text_data=json.dumps({**json.loads(sample(1, draining=True)), "v": 1}))
        await hub.flush(persist=True)
    node = await database_sync_to_async(Node.objects.get)(pk=node.pk)
    assert node.state == NodeState.DRAINING and node.protocol_version == 1
    action = await database_sync_to_async(NodeAction.objects.get)()
    assert action.outcome == "succeeded" and action.requested_by_id is None and "protocol v1" in action.message


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(hostile_samples(), min_size=3, max_size=6))
def test_generated_hostile_frames_never_take_down_another_node(batch):
    from asgiref.sync import async_to_sync

    async def scenario():
        suffix = f"{time.monotonic_ns()}"
        good, good_token = await database_sync_to_async(node_create)(name=f"good-{suffix}")
        _, bad_token = await database_sync_to_async(node_create)(name=f"bad-{suffix}")
        async with (
            ws_connected(AGENT, headers=agent_headers(good_token)) as good_agent,
            ws_connected(AGENT, headers=agent_headers(bad_token)) as bad_agent,
        ):
            await _hello(good_agent)
            await _hello(bad_agent)
            for i, text in enumerate(batch):
                await bad_agent.send_to(text_data=text.replace('"ts": 1800000000.0', f'"ts": {time.time()}'))
                await good_agent.send_to(text_data=sample(i + 1))
            await good_agent.send_to(text_data=sample(len(batch) + 1))
            await _stored_for(good, len(batch) + 1)
        status, _ = await _metrics_status_any()
        assert status == 200

    async_to_sync(scenario)()


async def _stored_for(node, count: int, *, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await hub.flush(persist=True)
        if await database_sync_to_async(GpuSample.objects.filter(node=node).count)() == count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"node {node.name}: samples not stored")


@database_sync_to_async
def _metrics_status_any() -> tuple[int, str]:
    from django.contrib.auth import get_user_model

    staff, _ = get_user_model().objects.get_or_create(username="metrics-reader", defaults={"is_staff": True})
    client = Client()
    client.force_login(staff)
    response = client.get("/metrics")
    return response.status_code, response.content.decode()
