"""Websocket URL map (agents and dashboards)."""

websocket_urlpatterns: list = []
