from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from billing.services import plan_get
from fleetagent.models import Node
from fleetagent.services import node_authenticate

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command("node_create", *args, stdout=out)
    return out.getvalue()


def test_registers_hosts_and_prints_each_token_once_as_json():
    printed = json.loads(run("gpu-01", "gpu-02", "--gpu-model", "L20", "--json"))
    assert [p["name"] for p in printed] == ["gpu-01", "gpu-02"] and set(printed[0]) == {"name", "token"}
    for entry in printed:
        node = node_authenticate(token=entry["token"])
        assert node.name == entry["name"] and node.gpu_model == "L20"
        assert entry["token"] not in (node.token_hash, node.token_prefix)  # only the hash is kept


def test_an_existing_name_is_a_clear_error_and_nothing_is_created():
    run("gpu-01", "--json")
    with pytest.raises(CommandError, match="already registered: gpu-01.*--rotate"):
        run("gpu-02", "gpu-01", "--json")
    assert list(Node.objects.values_list("name", flat=True)) == ["gpu-01"]


def test_rotate_issues_a_new_token_and_the_old_one_stops_working():
    [old] = json.loads(run("gpu-01", "--json"))
    [new] = json.loads(run("gpu-01", "--rotate", "--json"))
    assert node_authenticate(token=new["token"]).name == "gpu-01"
    with pytest.raises(Exception, match="Unknown or revoked"):
        node_authenticate(token=old["token"])


def test_dedicated_to_an_enterprise_tenant_only(make_tenant):
    enterprise = make_tenant("enterprise", name="Big Co")
    pro = make_tenant("pro", name="Small Co")
    json.loads(run("gpu-e1", "--tenant", enterprise.slug, "--json"))
    assert Node.objects.get(name="gpu-e1").dedicated_tenant == enterprise
    with pytest.raises(CommandError, match="no dedicated nodes"):
        run("gpu-p1", "--tenant", pro.name)
    with pytest.raises(CommandError, match="No tenant"):
        run("gpu-x", "--tenant", "nobody")
    assert plan_get(code="enterprise").dedicated_nodes


def test_invalid_names_are_refused():
    with pytest.raises(CommandError, match="'bad name'"):
        run("bad name")
    with pytest.raises(CommandError, match="twice"):
        run("a", "a")
