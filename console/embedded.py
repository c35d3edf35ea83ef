"""Services that run inside the ASGI process on the embedded default (no REDIS_URL).

On the embedded default one ``uvicorn console.asgi:application`` is the whole product: the
local node's agent, the periodic fleet sweeps and the job executor start with the
application (ASGI lifespan) and stop with it. With REDIS_URL set they run as their own
processes instead (``python -m fleetagent`` per GPU host, Celery workers and beat).

The local agent registers node ``settings.EMBEDDED_NODE_NAME`` ("local-cpu"), streams its
readings to the dashboards within a second or two, answers drain/resume/restart, and this
process runs what Celery beat runs in a full deployment (heartbeat/stuck sweep, sample
downsampling).
"""

from __future__ import annotations

import asyncio
import logging

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils.module_loading import import_string

from fleetagent.agent.client import AgentClient
from fleetagent.agent.collect import collector_open
from fleetagent.agent.loopback import loopback_connect
from fleetagent.agent.runtime import NodeRuntime
from fleetagent.agent.stats import JobStats
from fleetagent.services import node_ensure, node_states_sweep, samples_downsample
from inference.listeners import add_job_listener, remove_job_listener

logger = logging.getLogger(__name__)

# Each entry is an async callable returning an async ``stop`` callable.
EMBEDDED_SERVICES: list[str] = [
    "console.embedded.local_agent_start",
    "inference.embedded.start",
]

SWEEP_INTERVAL_S = 2.0
DOWNSAMPLE_INTERVAL_S = 60.0

_stops: list = []


async def embedded_start() -> None:
    if not settings.EMBEDDED:
        return
    for dotted in EMBEDDED_SERVICES:
        logger.info("starting embedded service %s", dotted)
        _stops.append(await import_string(dotted)())


async def embedded_stop() -> None:
    while _stops:
        stop = _stops.pop()
        try:
            await stop()
        except Exception:  # noqa: BLE001 - keep stopping the rest
            logger.exception("embedded service failed to stop cleanly")


async def fleet_periodic_loop() -> None:
    """What beat does in production: sweep node states every 2 s, downsample every minute."""
    from console.consumers.hub import hub

    loop = asyncio.get_running_loop()
    last_downsample = loop.time()
    while True:
        await asyncio.sleep(SWEEP_INTERVAL_S)
        try:
            changed = await database_sync_to_async(node_states_sweep)()
            if changed:
                hub.node_state_changed(*changed)
            if loop.time() - last_downsample >= DOWNSAMPLE_INTERVAL_S:
                last_downsample = loop.time()
                await database_sync_to_async(samples_downsample)()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - keep sweeping
            logger.exception("fleet sweep failed")


async def local_agent_start():
    """Start the local node's agent and the sweeps; returns the async stop callable."""
    from channels.routing import URLRouter

    from console.routing import websocket_urlpatterns  # late: routing imports the consumers

    node = await database_sync_to_async(node_ensure)(name=settings.EMBEDDED_NODE_NAME)
    stats = JobStats()
    add_job_listener(stats.job_finished)
    collector = await asyncio.to_thread(collector_open)
    app = URLRouter(websocket_urlpatterns)
    client = AgentClient(
        console_url="in-process",
        token="",
        collector=collector,
        runtime=NodeRuntime(node_name=node.name, stats=stats),
        stats=stats,
        node_name=node.name,
        engine=settings.VOXFLEET_ENGINE,
        connect=lambda: loopback_connect(app, node_id=node.pk),
    )
    agent_task = asyncio.create_task(client.run(), name="embedded-fleet-agent")
    periodic_task = asyncio.create_task(fleet_periodic_loop(), name="embedded-fleet-sweep")

    async def stop() -> None:
        client.stop()
        periodic_task.cancel()
        await asyncio.gather(periodic_task, return_exceptions=True)
        try:
            await asyncio.wait_for(agent_task, timeout=5)
        except TimeoutError:
            agent_task.cancel()
        remove_job_listener(stats.job_finished)
        collector.close()

    return stop
