"""Mounted at the site root (one line in console/urls.py): /ops/… and /metrics."""

from django.urls import path

from console.metrics import metrics
from console.ops import views

app_name = "ops"

urlpatterns = [
    path("ops/", views.dashboard, name="dashboard"),
    path("ops/nodes/<slug:name>/", views.node_detail, name="node_detail"),
    path("ops/api/nodes/", views.api_nodes, name="api_nodes"),
    path("ops/api/nodes/<slug:name>/actions/", views.api_node_actions, name="api_node_actions"),
    path("ops/api/nodes/<slug:name>/series/", views.api_node_series, name="api_node_series"),
    path("ops/api/actions/<int:action_id>/", views.api_action, name="api_action"),
    path("metrics", metrics, name="metrics"),
]
