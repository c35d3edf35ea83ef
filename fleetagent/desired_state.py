"""The console is the source of truth for a node's desired state (drained or not).

An agent that reconnects (after a network blip, an agent restart or a console restart) says
in its hello whether it is draining; a restarted agent always says it is not. When that
disagrees with ``Node.drained`` the console wins: a protocol v2 agent is told in ``welcome``
and applies it itself; a v1 agent is sent the drain (or resume) command it missed. Either way
the audit log says so, with no user (the console did it).
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone

from fleetagent.models import Node, NodeAction, NodeActionKind, NodeActionOutcome

# Protocol versions whose agents apply the desired state sent in welcome.
WELCOME_DESIRED_STATE_FROM = 2


def node_desired_state_reconcile(*, node: Node, agent_draining: bool, protocol_version: int) -> NodeAction | None:
    """Audit (and, for v1 agents, command) a hello that disagrees with the console's desired state."""
    if bool(agent_draining) == node.drained:
        return None
    action = NodeActionKind.DRAIN if node.drained else NodeActionKind.RESUME
    said = "draining" if agent_draining else "not draining"
    wanted = "drained" if node.drained else "taking jobs"
    if protocol_version >= WELCOME_DESIRED_STATE_FROM:
        return NodeAction.objects.create(
            node=node,
            action=action,
            outcome=NodeActionOutcome.SUCCEEDED,
            acknowledged_at=timezone.now(),
            message=f"agent reconnected {said}; the console keeps the node {wanted} (told in welcome)",
        )
    with transaction.atomic():
        if NodeAction.objects.filter(node=node, outcome=NodeActionOutcome.PENDING).exists():
            return None  # an earlier action is still on its way; its ack settles the state
        record = NodeAction.objects.create(
            node=node,
            action=action,
            message=f"agent (protocol v1) reconnected {said}; the console keeps the node {wanted}: {action} re-sent",
        )
        channel = node.agent_channel
        transaction.on_commit(lambda: _command_send(channel, record))
    return record


def _command_send(channel: str, record: NodeAction) -> None:
    if not channel:
        return
    async_to_sync(get_channel_layer().send)(
        channel, {"type": "agent.command", "command_id": record.pk, "action": record.action}
    )
