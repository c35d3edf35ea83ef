"""Agent and dashboard consumers driven through Channels' WebsocketCommunicator."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from billing.services import user_create
from console.consumers.hub import hub
from fleetagent import protocol
from fleetagent.models import GpuSample, Node, NodeAction, NodeState
from fleetagent.services import node_action_request, node_create, node_token_rotate
from tests.console.consumers.fleet_helpers import (
    DashboardReader,
    agent_headers,
    hello,
    sample,
    session_cookie_headers,
    ws_connected,
)

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

AGENT = "/ws/agent/"
DASHBOARD = "/ws/ops/fleet/"


@database_sync_to_async
def make_node(name="gpu-a"):
    return node_create(name=name, gpu_model="A10")


@database_sync_to_async
def make_user(username, *, staff):
    return user_create(username=username, password="pw-secret-123", email=f"{username}@example.com", is_staff=staff)


@database_sync_to_async
def reload(node):
    node.refresh_from_db()
    return node


async def test_agent_without_token_is_refused():
    async with ws_connected(AGENT, expect=False):
        pass


async def test_agent_with_wrong_token_is_refused():
    await make_node()
    async with ws_connected(AGENT, headers=agent_headers("vfn_wrong_" + "x" * 30), expect=False):
        pass


async def test_agent_with_revoked_or_rotated_token_is_refused():
    node, token = await make_node()
    # What staff do in the admin (token_revoked_at); no service revokes a node token.
    await database_sync_to_async(Node.objects.filter(pk=node.pk).update)(token_revoked_at=timezone.now())
    async with ws_connected(AGENT, headers=agent_headers(token), expect=False):
        pass
    fresh = await database_sync_to_async(node_token_rotate)(node=node)
    async with ws_connected(AGENT, headers=agent_headers(token), expect=False):
        pass
    async with ws_connected(AGENT, headers=agent_headers(fresh)):
        pass


async def test_staff_session_cookie_does_not_authenticate_an_agent():
    await make_node()
    staff = await make_user("ops", staff=True)
    async with ws_connected(AGENT, headers=await session_cookie_headers(staff), expect=False):
        pass


async def test_dashboard_refuses_anonymous_and_non_staff():
    async with ws_connected(DASHBOARD, expect=False):
        pass
    outsider = await make_user("customer", staff=False)
    async with ws_connected(DASHBOARD, headers=await session_cookie_headers(outsider), expect=False):
        pass


async def test_agent_samples_are_persisted_and_batched_to_dashboards():
    node, token = await make_node()
    staff = await make_user("ops", staff=True)
    async with ws_connected(DASHBOARD, headers=await session_cookie_headers(staff)) as ws:
        dash = DashboardReader(ws)
        first = await dash.next()
        assert first["type"] == "snapshot" and [n["name"] for n in first["nodes"]] == ["gpu-a"]
        async with ws_connected(AGENT, headers=agent_headers(token)) as agent:
            await agent.send_to(text_data=hello())
            welcome = json.loads(await agent.receive_from(timeout=5))
            assert welcome["type"] == "welcome" and welcome["node"] == "gpu-a"
            await agent.send_to(text_data=sample(1, util=40.0))
            await agent.send_to(text_data=sample(2, util=60.0))
            # Batches carry the node's newest reading; its job figures come when they change.
            while not (dash.readings(node.pk) and dash.readings(node.pk)[0]["utilization"] == 60.0):
                await dash.next()
            assert dash.node(node.pk)["name"] == "gpu-a" and dash.node(node.pk)["stats"]["jobs_queued"] == 2
            await hub.flush(persist=True)  # both samples reached the hub; store them now
    node = await reload(node)
    assert node.state == NodeState.ONLINE and node.gpu_model == "NVIDIA A10" and node.gpu_count == 1
    assert node.jobs_running == 1 and node.jobs_queued == 2 and node.stats["success_rate_5m"] == 0.9
    assert node.last_seen_at is not None
    assert node.agent_channel == ""  # cleared on disconnect
    utils = await database_sync_to_async(
        lambda: sorted(GpuSample.objects.filter(node=node).values_list("utilization", flat=True))
    )()
    assert utils == [40.0, 60.0]


async def test_bad_protocol_version_is_closed():
    _, token = await make_node()
    async with ws_connected(AGENT, headers=agent_headers(token)) as agent:
        await agent.send_to(text_data=json.dumps({"type": "hello", "v": 99}))
        error = json.loads(await agent.receive_from(timeout=5))
        assert error["type"] == "error" and "version" in error["message"]
        closed = await agent.receive_output(timeout=5)
        assert closed == {"type": "websocket.close", "code": protocol.CLOSE_BAD_PROTOCOL}


async def test_restart_command_reaches_agent_and_ack_is_audited():
    node, token = await make_node()
    staff = await make_user("ops", staff=True)
    async with ws_connected(AGENT, headers=agent_headers(token)) as agent:
        await agent.send_to(text_data=hello())
        await agent.receive_from(timeout=5)
        await agent.send_to(text_data=sample(1))
        await hub.flush(persist=True)
        record = await database_sync_to_async(node_action_request)(node=node, action="restart", user=staff)
        assert (await reload(node)).state == NodeState.RESTARTING
        command = json.loads(await agent.receive_from(timeout=5))
        assert command == {
            "type": "command",
            "v": protocol.PROTOCOL_VERSION,
            "command_id": record.pk,
            "action": "restart",
        }
        detail = {"vram_before_mb": 7100.0, "vram_after_mb": 6200.0, "jobs_finished": 1, "jobs_requeued": 0}
        await agent.send_to(
            text_data=protocol.message_encode(
                protocol.ACK, command_id=record.pk, action="restart", ok=True, detail=detail
            )
        )
        await agent.send_to(text_data=sample(2))  # frames are handled in order: the ack is done now
    action = await database_sync_to_async(NodeAction.objects.select_related("requested_by").get)(pk=record.pk)
    assert action.outcome == "succeeded" and action.requested_by.username == "ops"
    assert action.acknowledged_at is not None and action.detail["vram_after_mb"] == 6200.0
    assert "7100.0 MB -> 6200.0 MB" in action.message
    assert (await reload(node)).state == NodeState.ONLINE


async def test_agent_cannot_ack_another_nodes_action():
    node_a, token_a = await make_node("gpu-a")
    node_b, token_b = await make_node("gpu-b")
    async with ws_connected(AGENT, headers=agent_headers(token_a)) as agent_a:
        await agent_a.send_to(text_data=hello())
        await agent_a.receive_from(timeout=5)
        await agent_a.send_to(text_data=sample(1))
        await hub.flush(persist=True)
        record = await database_sync_to_async(node_action_request)(node=node_a, action="drain")
        await agent_a.receive_from(timeout=5)
        async with ws_connected(AGENT, headers=agent_headers(token_b)) as agent_b:
            await agent_b.send_to(text_data=hello())
            await agent_b.receive_from(timeout=5)
            forged = protocol.message_encode(protocol.ACK, command_id=record.pk, action="drain", ok=False, detail={})
            await agent_b.send_to(text_data=forged)
            error = json.loads(await agent_b.receive_from(timeout=5))
            assert error["type"] == "error" and error["code"] == "unknown_command"
    action = await database_sync_to_async(NodeAction.objects.get)(pk=record.pk)
    assert action.outcome == "pending"


async def test_state_changes_published_by_beat_reach_dashboards_through_the_hub_relay():
    from console.consumers.broadcast import fleet_nodes_broadcast

    node, _ = await make_node()
    staff = await make_user("ops", staff=True)
    async with ws_connected(DASHBOARD, headers=await session_cookie_headers(staff)) as dash:
        assert json.loads(await dash.receive_from(timeout=5))["type"] == "snapshot"
        await asyncio.wait_for(hub.relay_joined.wait(), timeout=5)
        await database_sync_to_async(fleet_nodes_broadcast)(node_ids=[node.pk])  # what the sweep task does
        # The relayed batch is a snapshot (it carries the state); live sample batches do not.
        batch = json.loads(await dash.receive_from(timeout=5))
        while "state" not in batch["nodes"][0]:
            batch = json.loads(await dash.receive_from(timeout=5))
        assert batch["type"] == "nodes" and [n["name"] for n in batch["nodes"]] == ["gpu-a"]
        assert batch["nodes"][0]["id"] == node.pk and batch["nodes"][0]["state"] == "offline"
