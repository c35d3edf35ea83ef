"""Ops pages and the ops API (thin: one selector or service call each)."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404
from django.shortcuts import render
from rest_framework import serializers, status
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response

from console.ops.access import staff_required
from fleetagent.choices import NodeState
from fleetagent.protocol import ACTIONS
from fleetagent.selectors import (
    OVERHEAT_C,
    fleet_alerts,
    fleet_state_alerts,
    fleet_summary,
    gpu_series,
    node_action_dict,
    node_action_find,
    node_action_list,
    node_find,
    node_snapshot_list,
)
from fleetagent.services import node_action_request


def _node_or_404(name: str):
    node = node_find(name=name)
    if node is None:
        raise Http404("No Node matches the given query.")
    return node


def _page_settings() -> dict:
    return {
        "offline_after_s": settings.NODE_OFFLINE_AFTER_S,
        "overheat_c": OVERHEAT_C,
        "ws_path": "/ws/ops/fleet/",
    }


@staff_required
def dashboard(request):
    # Node-state alerts from the node table alone: the GPU readings (5,000 of them) come with
    # the websocket's snapshot a moment later, and the page's JS lists their alerts too.
    return render(
        request,
        "ops/dashboard.html",
        {
            "summary": fleet_summary(),
            "alerts": fleet_state_alerts(),
            "states": NodeState.values,
            "actions": node_action_list(limit=20),
            "page_settings": _page_settings(),
        },
    )


@staff_required
def node_detail(request, name: str):
    node = _node_or_404(name)
    snapshot = node_snapshot_list(node_ids=[node.pk])[0]
    return render(
        request,
        "ops/node_detail.html",
        {
            "node": node,
            "snapshot": snapshot,
            "alerts": fleet_alerts(snapshots=[snapshot]),
            "series": gpu_series(node=node, minutes=10),
            "actions": node_action_list(node=node, limit=50),
            "page_settings": {**_page_settings(), "node": node.name, "node_id": node.pk},
        },
    )


class ActionInput(serializers.Serializer):
    action = serializers.ChoiceField(choices=ACTIONS)


@api_view(["GET"])
@permission_classes([IsAdminUser])
def api_nodes(request):
    nodes = node_snapshot_list()
    return Response({"nodes": nodes, "alerts": fleet_alerts(snapshots=nodes)})


@api_view(["GET", "POST"])
@permission_classes([IsAdminUser])
def api_node_actions(request, name: str):
    """GET: the node's audit log. POST {"action": drain|resume|restart}: 202, then the agent's ack."""
    node = _node_or_404(name)
    if request.method == "GET":
        return Response({"actions": [node_action_dict(a) for a in node_action_list(node=node)]})
    data = ActionInput(data=request.data)
    data.is_valid(raise_exception=True)
    record = node_action_request(node=node, action=data.validated_data["action"], user=request.user)
    return Response(node_action_dict(record), status=status.HTTP_202_ACCEPTED)


@api_view(["GET"])
@permission_classes([IsAdminUser])
def api_action(request, action_id: int):
    record = node_action_find(action_id=action_id)
    if record is None:
        raise Http404("No NodeAction matches the given query.")
    return Response(node_action_dict(record))


@api_view(["GET"])
@permission_classes([IsAdminUser])
def api_node_series(request, name: str):
    node = _node_or_404(name)
    try:
        minutes = max(1, min(int(request.query_params.get("minutes", 10)), 30 * 24 * 60))
    except ValueError:
        minutes = 10
    return Response(gpu_series(node=node, minutes=minutes))
