"""``manage.py node_create NAME [NAME …] [--gpu-model M] [--tenant T] [--rotate] [--json]``.

Registers GPU hosts from the command line and prints each token once; the agent on the host
needs it (``python -m fleetagent --token …``) and the console keeps only its hash. All names
or none: an existing name is an error naming it, unless ``--rotate`` asks for a new token
for it (the old token stops working at once).
"""

from __future__ import annotations

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Q

from fleetagent.models import Node
from fleetagent.services import node_create, node_token_rotate


def _tenant(ref: str):
    # The fleet refers to tenants by foreign key only; reach the model through it.
    Tenant = Node._meta.get_field("dedicated_tenant").related_model
    tenant = Tenant.objects.select_related("plan").filter(Q(slug=ref) | Q(name=ref)).first()
    if tenant is None:
        raise CommandError(f"No tenant {ref!r} (give its slug or its name).")
    if not getattr(tenant.plan, "dedicated_nodes", False):
        raise CommandError(
            f"Tenant {tenant.name!r} is on plan {tenant.plan} which has no dedicated nodes; "
            "a node dedicated to it would never be given a job."
        )
    return tenant


class Command(BaseCommand):
    help = "Register GPU hosts (nodes) and print their agent tokens once."

    def add_arguments(self, parser) -> None:
        parser.add_argument("names", nargs="+", metavar="NAME", help="node name(s): letters, digits, - and _")
        parser.add_argument("--gpu-model", default="", help="e.g. A10, L20, H100 (the agent reports it too)")
        parser.add_argument("--tenant", help="dedicate the node(s) to this enterprise tenant (slug or name)")
        parser.add_argument("--rotate", action="store_true", help="existing names get a new token instead of an error")
        parser.add_argument("--json", action="store_true", help='print [{"name", "token"}] as JSON')

    def handle(self, *args, names: list[str], gpu_model: str, tenant: str | None, rotate: bool, **options) -> None:
        if len(set(names)) != len(names):
            raise CommandError("A name is given twice.")
        dedicated = _tenant(tenant) if tenant else None
        existing = {n.name: n for n in Node.objects.filter(name__in=names)}
        if existing and not rotate:
            raise CommandError(
                f"Node(s) already registered: {', '.join(sorted(existing))}. "
                "Use --rotate to issue new tokens for them (their agents must then be given the new token)."
            )
        out = []
        with transaction.atomic():
            for name in names:
                if name in existing:
                    out.append({"name": name, "token": node_token_rotate(node=existing[name]), "rotated": True})
                    continue
                try:
                    _, token = node_create(name=name, dedicated_tenant=dedicated, gpu_model=gpu_model)
                except ValidationError as exc:
                    raise CommandError(f"{name!r}: {'; '.join(exc.messages)}") from None
                out.append({"name": name, "token": token, "rotated": False})
        if options["json"]:
            self.stdout.write(json.dumps([{"name": o["name"], "token": o["token"]} for o in out]))
            return
        for o in out:
            verb = "new token for" if o["rotated"] else "registered"
            self.stdout.write(f"{verb} {o['name']}: {o['token']}")
        self.stdout.write(
            "Each token is shown once; start the agent with: python -m fleetagent --console URL --token TOKEN"
        )
