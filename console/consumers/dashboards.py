"""Websocket endpoint for the ops dashboard: ``/ws/ops/fleet/``, staff sessions only.

Live batches come from this process's fleet hub (console.consumers.hub), which relays
batches from other processes as well.
"""

from __future__ import annotations

import json
import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from console.consumers.hub import hub
from fleetagent.selectors import node_snapshot_list


class DashboardConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_staff:
            await self.close(code=4403)
            return
        await self.accept()
        nodes = await database_sync_to_async(node_snapshot_list)()
        await self.send(json.dumps({"type": "snapshot", "sent_at": time.time(), "nodes": nodes}))
        hub.dashboard_add(self)  # after the snapshot, so no batch overtakes it

    async def disconnect(self, code) -> None:
        hub.dashboard_remove(self)

    async def receive(self, text_data=None, bytes_data=None) -> None:
        # Read-only stream: actions go through the HTTP API (CSRF, audit, one code path).
        return
