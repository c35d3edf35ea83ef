"""Seed the end-to-end server's fresh database through the real commands and services.

Run as a script with the server's environment (``--hosts``: the nodes get v3 hosts, so no
stand-in hello); prints one JSON line: API keys by role, the
node names and their tokens, and the demo logins.
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402

from billing.models import Tenant  # noqa: E402
from billing.services import api_key_create, plan_get, reservation_create, tenant_create, user_create  # noqa: E402
from fleetagent.services import node_create, node_ensure  # noqa: E402
from tests.support.fleet import agent_hello  # noqa: E402


def tenant(name: str, plan: str) -> tuple:
    owner = user_create(username=name.lower().replace(" ", "-"), password="pw-secret-123")
    created = tenant_create(name=name, plan=plan_get(code=plan), owner=owner)
    _, key = api_key_create(tenant=created, name="e2e", created_by=owner)
    return created, key


def main() -> None:
    out = io.StringIO()
    call_command("seed_demo", "--json", stdout=out)
    demo = json.loads(out.getvalue())
    keys = {t["plan"].lower(): t["api_key"] for t in demo["tenants"]}
    _, keys["outsider"] = tenant("Outsider Pro", "pro")
    _, keys["limited"] = tenant("Limited Free", "free")
    _, keys["warmup"] = tenant("Warmup Pro", "pro")
    # The API contract test (schemathesis) gets a tenant of its own: its traffic spends no
    # other test's quota or rate limit.
    _, keys["contract"] = tenant("Contract Free", "free")
    drained, keys["drained"] = tenant("Drained Free", "free")
    # Spend the Free allowance down to 5 tokens through billing's own reservation.
    reservation_create(tenant=drained, tokens=495)
    node_name = settings.EMBEDDED_NODE_NAME
    enterprise = Tenant.objects.get(name=next(t["name"] for t in demo["tenants"] if t["plan"] == "Enterprise"))
    dedicated, dedicated_token = node_create(name=f"{node_name}-dedicated", dedicated_tenant=enterprise)
    # Online the way an agent's hello makes a node online. The test's Celery worker has no
    # agent socket, so no channel: an ops action on these nodes is refused as for a gone agent.
    # With ``--hosts`` each node's own v3 host says hello when it connects (until then: offline).
    if "--hosts" not in sys.argv[1:]:
        for node in (node_ensure(name=node_name), dedicated):
            agent_hello(node, hello={"engine": settings.VOXFLEET_ENGINE}, channel_name="")
    # Node tokens: what a v3 host started for the node (live_server_start(worker="host")) holds.
    tokens = {node["name"]: node["token"] for node in demo["nodes"]} | {dedicated.name: dedicated_token}
    nodes = [node_name, dedicated.name]
    print(json.dumps({"keys": keys, "node": node_name, "nodes": nodes, "tokens": tokens, "demo": demo}))


if __name__ == "__main__":
    main()
