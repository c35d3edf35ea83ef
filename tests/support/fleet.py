"""Fleet nodes for tests, brought into the state a test needs through the fleet's own services.

A registered node starts offline; its agent's hello (``node_agent_connect``) is what brings
it online in production, so that is how tests bring it online too.
"""

from __future__ import annotations

from fleetagent.services import node_agent_connect, node_create

# What a CPU-only host's agent says when it connects: no NVML, no GPUs.
CPU_AGENT_HELLO = {"nvml": False, "gpus": []}


def agent_hello(node, *, hello: dict | None = None, channel_name: str | None = None):
    """``node``'s agent connects and says hello: an offline, stuck or restarting node is online
    again (draining if the agent says it drains), with a heartbeat now; returns the node."""
    return node_agent_connect(
        node_id=node.pk,
        channel_name=f"chan-{node.name}" if channel_name is None else channel_name,
        hello=CPU_AGENT_HELLO if hello is None else hello,
    )


def node_online(name: str, *, tenant=None, hello: dict | None = None, channel_name: str | None = None):
    """A new node (dedicated to ``tenant`` when given) whose agent has connected: online."""
    node, _token = node_create(name=name, dedicated_tenant=tenant)
    return agent_hello(node, hello=hello, channel_name=channel_name)
