"""Websocket endpoint for the ops dashboard: ``/ws/ops/fleet/``, staff sessions only.

Live batches come from this process's fleet hub (console.consumers.hub), which folds in the
updates of other processes as well. A dashboard holds no channel of its own: the hub hands
it batches directly, so a Redis restart does not drop the browsers watching. It gets a
snapshot on connect and whenever it sends ``{"type": "resync"}`` (a gap in the batches'
``seq``: see console.consumers.wire), then numbered deltas.
"""

from __future__ import annotations

import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from console.consumers.hub import hub
from console.consumers.wire import off_the_shared_thread
from fleetagent.selectors import node_snapshot_list

# Not a configured alias: Channels then gives the consumer no channel-layer channel at all.
NO_CHANNEL_LAYER = "none"
# A resync request is a few bytes; anything longer is not one.
RESYNC_MAX_CHARS = 64


class DashboardConsumer(AsyncWebsocketConsumer):
    channel_layer_alias = NO_CHANNEL_LAYER

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_staff:
            await self.close(code=4403)
            return
        await self.accept()
        self.snapshotting = False
        # Registered first but held: batches fanned out while the snapshot is read wait, and
        # those the snapshot already covers are dropped (DashboardOutbox.restart).
        self.outbox = hub.dashboard_add(self, held=True)
        await self._snapshot_send()

    async def _snapshot_send(self) -> None:
        self.snapshotting = True
        try:
            # Readings the hub has live (every streaming node) are not read again from the database.
            nodes = await database_sync_to_async(node_snapshot_list, thread_sensitive=not off_the_shared_thread())(
                readings_known=hub.readings_known()
            )
            seq, text = hub.dashboard_snapshot(nodes)
            self.outbox.restart(seq, text)
        finally:
            self.snapshotting = False

    async def disconnect(self, code) -> None:
        hub.dashboard_remove(self)

    async def receive(self, text_data=None, bytes_data=None) -> None:
        # Read-only stream: actions go through the HTTP API (CSRF, audit, one code path). The
        # one message it takes is a resync; one already under way answers a second.
        if not text_data or len(text_data) > RESYNC_MAX_CHARS or self.snapshotting:
            return
        try:
            message = json.loads(text_data)
        except ValueError:
            return
        if isinstance(message, dict) and message.get("type") == "resync":
            await self._snapshot_send()
