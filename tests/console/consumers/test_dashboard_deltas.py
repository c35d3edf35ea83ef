"""Dashboards get a snapshot, then numbered batches with only what changed (real consumers and hub)."""

from __future__ import annotations

import asyncio
import time

import pytest
from channels.layers import get_channel_layer

from console.consumers.groups import HUBS
from console.consumers.hub import hub
from console.consumers.wire import GPU_WIRE_FIELDS, dashboard_message
from tests.console.consumers.fleet_helpers import (
    DashboardReader,
    agent_headers,
    hello,
    sample,
    session_cookie_headers,
    ws_connected,
)
from tests.console.consumers.test_fleet import AGENT, DASHBOARD, make_node, make_user

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

UTIL = GPU_WIRE_FIELDS.index("utilization")
TEMP = GPU_WIRE_FIELDS.index("temperature_c")


def entry_of(message: dict, node_id: int) -> dict:
    return next(n for n in message["nodes"] if n["id"] == node_id)


async def until_reading(dash: DashboardReader, node_id: int, field: str, value) -> dict:
    """Read batches until the node's GPU 0 shows value; the batch that brought it."""
    while not (dash.readings(node_id) and dash.readings(node_id)[0][field] == value):
        await dash.next()
    return dash.messages[-1]


async def test_a_dashboard_gets_a_snapshot_then_only_the_fields_that_changed():
    node, token = await make_node()
    staff = await make_user("ops", staff=True)
    async with (
        ws_connected(DASHBOARD, headers=await session_cookie_headers(staff)) as ws,
        ws_connected(AGENT, headers=agent_headers(token)) as agent,
    ):
        dash = DashboardReader(ws)
        snapshot = await dash.next()
        assert snapshot["type"] == "snapshot" and [n["name"] for n in snapshot["nodes"]] == ["gpu-a"]
        await agent.send_to(text_data=hello())
        await agent.receive_from(timeout=5)
        await agent.send_to(text_data=sample(1, util=40.0))
        first = entry_of(await until_reading(dash, node.pk, "utilization", 40.0), node.pk)
        assert len(first["gpus"]) == 1 and first["stats"]["jobs_queued"] == 2  # new to the dashboard: whole

        await agent.send_to(text_data=sample(2, util=60.0))
        batch = await until_reading(dash, node.pk, "utilization", 60.0)
        update = entry_of(batch, node.pk)
        # Only the utilization of GPU 0 and the reading's time: not the rows, name, job figures or host.
        assert update["gpu_delta"] == [[0, UTIL, 60.0]]
        assert not {"gpus", "name", "stats", "host"} & update.keys() and update["ts"] > first["ts"]
        # Applied to what the dashboard had, it is the whole new reading.
        (reading,) = dash.readings(node.pk)
        assert reading["utilization"] == 60.0 and reading["vram_used_mb"] == 6100.0 and reading["temperature_c"] == 66.0
        assert [m["seq"] for m in dash.messages] == list(range(snapshot["seq"], snapshot["seq"] + len(dash.messages)))


async def test_a_late_dashboard_starts_from_the_live_readings_and_the_deltas_apply_to_them():
    node, token = await make_node()
    staff = await make_user("ops", staff=True)
    async with ws_connected(AGENT, headers=agent_headers(token)) as agent:
        await agent.send_to(text_data=hello())
        await agent.receive_from(timeout=5)
        await agent.send_to(text_data=sample(1, util=33.0))
        async with asyncio.timeout(5):
            while node.pk not in hub.readings_known():  # fanned out (to no dashboard yet)
                await hub.flush(persist=False)
                await asyncio.sleep(0.02)
        async with ws_connected(DASHBOARD, headers=await session_cookie_headers(staff)) as ws:
            dash = DashboardReader(ws)
            snapshot = await dash.next()
            assert snapshot["type"] == "snapshot"
            assert dash.readings(node.pk)[0]["utilization"] == 33.0  # what the hub has sent, live
            await agent.send_to(text_data=sample(3, util=77.0))
            batch = await until_reading(dash, node.pk, "utilization", 77.0)
            assert entry_of(batch, node.pk)["gpu_delta"] == [[0, UTIL, 77.0]]
            assert dash.readings(node.pk)[0]["power_w"] == 120.0


async def test_a_resync_request_gets_a_fresh_snapshot_and_other_text_is_ignored():
    node, _ = await make_node()
    staff = await make_user("ops", staff=True)
    async with ws_connected(DASHBOARD, headers=await session_cookie_headers(staff)) as ws:
        dash = DashboardReader(ws)
        first = await dash.next()
        for junk in ("x" * 200, "{", '"resync"', '{"type": "drain"}'):
            await ws.send_to(text_data=junk)
        assert await ws.receive_nothing(timeout=0.5)
        await ws.send_to(text_data='{"type":"resync"}')
        again = await dash.next()
        assert again["type"] == "snapshot" and again["seq"] >= first["seq"]
        assert [n["id"] for n in again["nodes"]] == [node.pk]


async def test_another_processes_whole_updates_reach_this_processes_dashboards_as_deltas():
    node, _ = await make_node()
    staff = await make_user("ops", staff=True)
    layer = get_channel_layer()
    base = [0, 10.0, 5.0, 1000.0, 24000.0, 50.0, 80.0, 150.0, 1500.0, 0, 0, 0, None]

    async def publish(ts: float, temp: float) -> None:
        row = list(base)
        row[TEMP] = temp
        text = dashboard_message("nodes", [{"id": node.pk, "name": "gpu-a", "ts": ts, "gpus": [row]}])
        await layer.group_send(HUBS, {"type": "fleet.relay", "text": text, "origin": "another-process"})

    async with ws_connected(DASHBOARD, headers=await session_cookie_headers(staff)) as ws:
        dash = DashboardReader(ws)
        await dash.next()
        await asyncio.wait_for(hub.relay_joined.wait(), timeout=5)
        for junk in ("not json", '{"nodes": [{"name": "no id"}]}'):  # dropped; the relay goes on
            await layer.group_send(HUBS, {"type": "fleet.relay", "text": junk, "origin": "another-process"})
        now = time.time()
        await publish(now, 50.0)
        assert len(entry_of(await until_reading(dash, node.pk, "temperature_c", 50.0), node.pk)["gpus"]) == 1
        await publish(now + 1, 51.0)
        update = entry_of(await until_reading(dash, node.pk, "temperature_c", 51.0), node.pk)
        assert update == {"id": node.pk, "ts": now + 1, "gpu_delta": [[0, TEMP, 51.0]]}
        await publish(now - 5, 20.0)  # an older reading (a late relay) changes nothing on screen
        assert await ws.receive_nothing(timeout=0.5)
        assert dash.readings(node.pk)[0]["temperature_c"] == 51.0
