"""Websocket endpoint for the ops dashboard: ``/ws/ops/fleet/``, staff sessions only.

Live batches come from this process's fleet hub (console.consumers.hub), which relays
batches from other processes as well. A dashboard holds no channel of its own: the hub hands
it batches directly, so a Redis restart does not drop the browsers watching.
"""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from console.consumers.hub import hub
from console.consumers.wire import dashboard_message, node_for_wire, off_the_shared_thread
from fleetagent.selectors import node_snapshot_list

# Not a configured alias: Channels then gives the consumer no channel-layer channel at all.
NO_CHANNEL_LAYER = "none"


class DashboardConsumer(AsyncWebsocketConsumer):
    channel_layer_alias = NO_CHANNEL_LAYER

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_staff:
            await self.close(code=4403)
            return
        await self.accept()
        # Registered first but held: a batch fanned out while the snapshot is read is sent after
        # it (newer news), instead of being missed because it went out before we joined.
        outbox = hub.dashboard_add(self, held=True)
        nodes = await database_sync_to_async(node_snapshot_list, thread_sensitive=not off_the_shared_thread())()
        await self.send(dashboard_message("snapshot", [node_for_wire(n) for n in nodes]))
        outbox.release()

    async def disconnect(self, code) -> None:
        hub.dashboard_remove(self)

    async def receive(self, text_data=None, bytes_data=None) -> None:
        # Read-only stream: actions go through the HTTP API (CSRF, audit, one code path).
        return
