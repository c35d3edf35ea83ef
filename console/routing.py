"""Websocket URL map (agents and dashboards)."""

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from console.consumers.agents import AgentConsumer
from console.consumers.dashboards import DashboardConsumer

websocket_urlpatterns: list = [
    # Agents are no browsers: no Origin, no session (resolving one costs a trip to asgiref's one
    # shared thread per connect, and 625 agents reconnect at once); their token is the check.
    path("ws/agent/", AgentConsumer.as_asgi()),
    # A browser sends its session cookie to any page's websocket: only our own pages may open it.
    path("ws/ops/fleet/", AllowedHostsOriginValidator(AuthMiddlewareStack(DashboardConsumer.as_asgi()))),
]
