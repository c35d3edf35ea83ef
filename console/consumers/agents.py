"""Websocket endpoint for fleet agents: ``/ws/agent/`` with ``Authorization: Bearer vfn_…``.

The node token travels in a header (never a cookie or the query string, which end up in
logs); a wrong or revoked token is refused before the handshake completes (HTTP 403).
The consumer only routes frames to small handlers; database work is in fleetagent.services.
"""

from __future__ import annotations

import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from console.consumers.hub import hub
from console.errors import NotFound, VoxfleetError
from fleetagent import protocol
from fleetagent.agent.loopback import EMBEDDED_SCOPE_KEY
from fleetagent.selectors import node_get
from fleetagent.services import (
    node_action_acknowledge,
    node_agent_bye,
    node_agent_connect,
    node_agent_disconnect,
    node_authenticate,
)
from inference.services import job_requeue_unheld, jobs_dispatch_waiting

logger = logging.getLogger(__name__)


def bearer_token(scope) -> str:
    for name, value in scope.get("headers") or []:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""


def _hello_recover(*, node_name: str, held) -> None:
    """After a hello: running jobs the agent no longer holds are requeued now (an agent that
    sends no ``jobs`` list, an older one, is left to the heartbeat), and jobs waiting for a
    node are dispatched (this one may be the node they wait for)."""
    if isinstance(held, list):
        job_requeue_unheld(node_name=node_name, held=[int(j) for j in held if isinstance(j, int)])
    jobs_dispatch_waiting()


class AgentConsumer(AsyncWebsocketConsumer):
    node = None
    registered = False

    async def connect(self) -> None:
        embedded_node_id = self.scope.get(EMBEDDED_SCOPE_KEY)
        if embedded_node_id is not None:
            # Set only by fleetagent.agent.loopback inside this process, never by a server.
            self.node = await database_sync_to_async(node_get)(node_id=embedded_node_id)
            await self.accept()
            return
        try:
            self.node = await database_sync_to_async(node_authenticate)(token=bearer_token(self.scope))
        except NotFound:
            logger.warning("agent refused: unknown or revoked node token from %s", self.scope.get("client"))
            await self.close(code=protocol.CLOSE_UNAUTHORIZED)
            return
        await self.accept()

    async def disconnect(self, code) -> None:
        if self.node is not None and self.registered:
            await database_sync_to_async(node_agent_disconnect)(node_id=self.node.pk, channel_name=self.channel_name)
            hub.node_state_changed(self.node.pk)

    async def receive(self, text_data=None, bytes_data=None) -> None:
        try:
            message = protocol.message_decode(text_data or bytes_data or b"", allowed=protocol.AGENT_TYPES)
        except protocol.ProtocolError as exc:
            await self.send(protocol.message_encode(protocol.ERROR, code="bad_frame", message=str(exc)))
            await self.close(code=protocol.CLOSE_BAD_PROTOCOL)
            return
        handler = getattr(self, f"on_{message['type']}")
        await handler(message)

    async def on_hello(self, message: dict) -> None:
        self.node = await database_sync_to_async(node_agent_connect)(
            node_id=self.node.pk, channel_name=self.channel_name, hello=message
        )
        self.registered = True
        hub.node_state_changed(self.node.pk)
        await database_sync_to_async(_hello_recover)(node_name=self.node.name, held=message.get("jobs"))
        await self.send(
            protocol.message_encode(
                protocol.WELCOME, node=self.node.name, sample_interval_s=1.0, protocol=protocol.PROTOCOL_VERSION
            )
        )

    async def on_sample(self, message: dict) -> None:
        if not self.registered:
            await self.close(code=protocol.CLOSE_BAD_PROTOCOL)
            return
        hub.sample_submit(node_id=self.node.pk, node_name=self.node.name, sample=message)

    async def on_ack(self, message: dict) -> None:
        try:
            await database_sync_to_async(node_action_acknowledge)(
                node_id=self.node.pk,
                command_id=message["command_id"],
                ok=bool(message.get("ok")),
                detail=message.get("detail") or {},
                error=str(message.get("error") or ""),
            )
        except VoxfleetError as exc:
            await self.send(protocol.message_encode(protocol.ERROR, code=exc.code, message=exc.message))
            return
        hub.node_state_changed(self.node.pk)

    async def on_bye(self, message: dict) -> None:
        if self.registered:
            await database_sync_to_async(node_agent_bye)(
                node_id=self.node.pk, channel_name=self.channel_name, reason=str(message.get("reason") or "")
            )
            hub.node_state_changed(self.node.pk)
        await self.close()

    # Channel-layer messages (from fleetagent.services.node_action_request).
    async def agent_command(self, event: dict) -> None:
        await self.send(
            protocol.message_encode(protocol.COMMAND, command_id=event["command_id"], action=event["action"])
        )
