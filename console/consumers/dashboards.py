"""Websocket endpoint for the ops dashboard: ``/ws/ops/fleet/``, staff sessions only."""

from __future__ import annotations

import json
import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from console.consumers.groups import DASHBOARDS
from fleetagent.selectors import node_snapshot_list


class DashboardConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_staff:
            await self.close(code=4403)
            return
        await self.channel_layer.group_add(DASHBOARDS, self.channel_name)
        await self.accept()
        nodes = await database_sync_to_async(node_snapshot_list)()
        await self.send(json.dumps({"type": "snapshot", "sent_at": time.time(), "nodes": nodes}))

    async def disconnect(self, code) -> None:
        await self.channel_layer.group_discard(DASHBOARDS, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None) -> None:
        # Read-only stream: actions go through the HTTP API (CSRF, audit, one code path).
        return

    async def fleet_batch(self, event: dict) -> None:
        await self.send(event["text"])
