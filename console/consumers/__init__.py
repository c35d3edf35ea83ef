"""Channels consumers: fleet agents and ops dashboards."""
