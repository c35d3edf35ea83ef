"""Websocket URL map (agents and dashboards)."""

from django.urls import path

from console.consumers.agents import AgentConsumer
from console.consumers.dashboards import DashboardConsumer

websocket_urlpatterns: list = [
    path("ws/agent/", AgentConsumer.as_asgi()),
    path("ws/ops/fleet/", DashboardConsumer.as_asgi()),
]
