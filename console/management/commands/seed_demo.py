"""Create (idempotently) the demo admin, three tenants with owners and API keys, and the local node."""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from billing.selectors import api_key_list_for_tenant, tenant_get_by_name
from billing.services import api_key_create, api_key_revoke, plan_get, tenant_create, user_create
from fleetagent.selectors import node_find
from fleetagent.services import node_create, node_token_rotate

ADMIN = {"username": "admin", "password": "voxfleet-admin", "email": "admin@voxfleet.local"}
TENANTS = [
    {"name": "Lotus Free Studio", "plan": "free", "username": "free", "password": "voxfleet-free"},
    {"name": "Pearl Pro Media", "plan": "pro", "username": "pro", "password": "voxfleet-pro"},
    {"name": "Jade Enterprise Corp", "plan": "enterprise", "username": "enterprise", "password": "voxfleet-ent"},
]
DEMO_KEY_NAME = "demo"


def _user(*, username: str, password: str, email: str, is_staff: bool = False):
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        return user_create(username=username, password=password, email=email, is_staff=is_staff)
    # Keep the printed login true even if someone changed the password in the admin.
    user.set_password(password)
    user.is_staff = user.is_superuser = is_staff
    user.is_active = True
    user.save()
    return user


class Command(BaseCommand):
    help = "Create the demo admin, Free/Pro/Enterprise tenants with owners and API keys, and the local node."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="Print the logins, keys and tokens as JSON.")

    @transaction.atomic
    def handle(self, *args, **options):
        _user(**ADMIN, is_staff=True)
        tenants = []
        for spec in TENANTS:
            owner = _user(username=spec["username"], password=spec["password"], email=f"{spec['username']}@demo.local")
            plan = plan_get(code=spec["plan"])
            tenant = tenant_get_by_name(name=spec["name"])
            if tenant is None:
                tenant = tenant_create(name=spec["name"], plan=plan, owner=owner)
            # Re-running rotates the demo key: the old one stops working, the new one is printed.
            for old in api_key_list_for_tenant(tenant=tenant):
                if old.name == DEMO_KEY_NAME and old.revoked_at is None:
                    api_key_revoke(key=old)
            _, plaintext = api_key_create(tenant=tenant, name=DEMO_KEY_NAME, created_by=owner)
            tenants.append(
                {
                    "name": tenant.name,
                    "plan": tenant.plan.name,
                    "username": spec["username"],
                    "password": spec["password"],
                    "api_key": plaintext,
                }
            )
        node_name = settings.EMBEDDED_NODE_NAME
        node = node_find(name=node_name)
        if node is None:
            node, token = node_create(name=node_name)
        else:
            token = node_token_rotate(node=node)
        data = {
            "admin": {"username": ADMIN["username"], "password": ADMIN["password"]},
            "tenants": tenants,
            "nodes": [{"name": node.name, "token": token}],
        }
        if options["json"]:
            self.stdout.write(json.dumps(data, indent=2))
            return
        self.stdout.write(f"admin       {ADMIN['username']} / {ADMIN['password']}")
        for t in tenants:
            self.stdout.write(f"{t['plan']:<11} {t['username']} / {t['password']}   API key: {t['api_key']}")
        self.stdout.write(f"node        {node.name}   token: {token}")
